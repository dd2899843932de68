"""Base-network report: the val-mIoU-vs-step curve (PNG) and per-class IoU with each class's frequency.

``python -m moose_ros.train.report --config RECIPE --checkpoint base.pt --log base_log.jsonl [--log ...]
--curve models/val_miou.png --json models/base_report.json``

- The curve joins the validation records of one or more ``<stage>_log.jsonl`` files (a run continued from an
  earlier checkpoint passes ``--offset STEPS`` for the steps that checkpoint had already taken).
- Per class: global-head IoU on the whole val split and the fraction of val images in which the class occurs,
  so the goal "every class in >= 10 % of val images above 0 IoU" can be read off directly.
- Saturation: the val-mIoU gain over the last 20 % of the steps (< 1 point = saturated).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.errors import MooseError

__all__ = ["class_report", "load_curve", "main", "plot_curve", "saturation"]

log = logging.getLogger(__name__)


def load_curve(logs: Sequence[tuple[Path, int]]) -> list[tuple[int, float]]:
    """``[(step, val global mIoU in [0, 1])]`` sorted by step, from ``(log.jsonl, step offset)`` pairs."""
    points: dict[int, float] = {}
    for path, offset in logs:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                points[int(record["step"]) + offset] = float(record["global_miou"])
    return sorted(points.items())


def saturation(curve: Sequence[tuple[int, float]]) -> dict[str, float]:
    """Val-mIoU gain (points) between the last record before the final 20 % of steps and the last record."""
    last_step, last = curve[-1]
    start = last_step - 0.2 * (last_step - curve[0][0])
    before = [v for s, v in curve if s <= start]
    ref = before[-1] if before else curve[0][1]
    gain = 100.0 * (last - ref)
    return {"gain_last_20pct_points": gain, "saturated": bool(gain < 1.0), "last_step": last_step}


def plot_curve(curve: Sequence[tuple[int, float]], out: Path, *, title: str) -> Path:
    """Write the curve as a PNG (matplotlib, Agg backend); returns ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _ in curve]
    values = [100.0 * v for _, v in curve]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, values, marker="o")
    ax.set_xlabel("optimisation step (batch 8)")
    ax.set_ylabel("val mIoU of the global head (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out)
    return out


def class_report(checkpoint: Path, samples: Any, *, limit: int | None = None) -> dict[str, Any]:
    """Global-head IoU per class on ``samples`` and the fraction of images each class occurs in."""
    from moose_ros.model import load_checkpoint
    from moose_ros.train.validate import evaluate_heads

    model, meta = load_checkpoint(checkpoint)
    res = evaluate_heads(model, samples, mean=meta.mean, std=meta.std, num_classes=model.num_classes,
                         ignore_index=meta.ignore_index, resize=None, limit=limit)
    count = len(samples) if limit is None else min(limit, len(samples))
    present = np.zeros(model.num_classes, np.int64)
    for i in range(count):
        ids = np.unique(np.asarray(samples[i].label))
        present[ids[ids < model.num_classes]] += 1
    classes = [{"class": name, "iou": res["global_iou_per_class"][c], "image_fraction": present[c] / count}
               for c, name in enumerate(meta.classes)]
    frequent = [c for c in classes if c["image_fraction"] >= 0.10]
    return {"global_miou": res["global_miou"], "moose_miou": res["moose_miou"], "probe_miou": res["probe_miou"],
            "num_images": count, "classes": classes,
            "frequent_classes_at_zero": [c["class"] for c in frequent if not c["iou"] > 0.0]}


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 2 with one line on bad input."""
    parser = argparse.ArgumentParser(prog="python -m moose_ros.train.report", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training recipe (its data.val_split is evaluated)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--log", action="append", default=[], metavar="JSONL[:OFFSET]",
                        help="validation log of a run, optionally with the step offset of its start (repeatable)")
    parser.add_argument("--curve", default=None, help="write the val-mIoU curve PNG here")
    parser.add_argument("--json", default=None, help="write the report JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from moose_ros.data import open_dataset
        from moose_ros.train.config import load_config

        cfg = load_config(args.config)
        logs = []
        for item in args.log:
            path, _, offset = item.partition(":")
            if not Path(path).is_file():
                raise MooseError(f"--log {path}: no such file")
            logs.append((Path(path), int(offset or 0)))
        report: dict[str, Any] = {}
        if logs:
            curve = load_curve(logs)
            report["curve"] = curve
            report["saturation"] = saturation(curve)
            if args.curve:
                plot_curve(curve, Path(args.curve), title="SynthStreet val, bundled base network")
        samples = open_dataset(cfg.data.kind, cfg.data.root, cfg.data.val_split)
        report.update(class_report(Path(args.checkpoint), samples))
        text = json.dumps(report, indent=1)
        if args.json:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
        print(text)
    except (MooseError, ValueError) as err:
        print(f"report: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
