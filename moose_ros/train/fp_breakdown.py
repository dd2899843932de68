"""Where the whole-image false positives of each OoD-table method lie: class, class border, image band.

``python -m moose_ros.train.fp_breakdown --config RECIPE --runs DIR --seeds 0 [--scores max_logit entropy]``

For every method of the OoD table (:mod:`moose_ros.train.ood_heads`: Global, Global-refit, best probe, MOoSe)
and score variant, on the recipe's OoD split read as a whole image (anomaly = unknown object, every other pixel
in-distribution): the highest threshold that detects a fraction ``tpr`` of the anomaly pixels (the operating
point of FPR95 at ``tpr = 0.95``), then, over the in-distribution pixels at or above it (the false positives):

- ``fpr``: their fraction of all in-distribution pixels (the false-positive rate at that true-positive rate);
- ``border_share``: the fraction on class borders of the method's own predicted segmentation (a pixel whose
  3x3 neighbourhood holds another predicted class); ``border_base`` is that fraction over all in-distribution
  pixels, for comparison;
- ``band_share``: the fractions in the top / middle / bottom third of the image rows;
- ``class_share``: the fractions per predicted class.

A low ``tpr`` (0.5) shows the high-precision end that decides AUPR; 0.95 the FPR95 operating point. Scores and
labels come from the fused graph's post-processing (:func:`moose_ros.eval.variants.variant_maps`), as in the OoD
table. Memory: about 5 bytes per pixel per method key and score (a 100-image 192x384 split with 3 seeds and 2
scores: ~0.5 GB).

Writes ``--json`` (every number, per seed) and ``--markdown`` (mean over seeds, in %).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moose_ros.errors import ConfigError, run_cli
from moose_ros.outputs import write_text_atomic
from moose_ros.train.ood_heads import METHODS, TableScorer, method_of, seed_of

__all__ = ["border_mask", "breakdown", "collect", "format_markdown", "main"]

#: Row bands of ``band_share``.
BANDS: tuple[str, ...] = ("top", "middle", "bottom")


def border_mask(labels: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose 3x3 neighbourhood holds another label (the graph's boundary-suppression borders)."""
    from moose_ros.export.postprocess import class_borders

    t = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[None, None]
    return class_borders(t)[0, 0].numpy()


class _Pixels:
    """Valid pixels of the whole split: anomaly flag, row band, and per method its labels, borders and scores."""

    def __init__(self) -> None:
        self.anomaly: list[np.ndarray] = []
        self.band: list[np.ndarray] = []
        self.labels: dict[str, list[np.ndarray]] = {}
        self.border: dict[str, list[np.ndarray]] = {}
        self.scores: dict[tuple[str, str], list[np.ndarray]] = {}

    def add(self, ood: np.ndarray, per_method: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]) -> None:
        valid = ood != 255
        h = ood.shape[0]
        self.anomaly.append(ood[valid] == 1)
        self.band.append(np.broadcast_to((np.arange(h) * 3 // h)[:, None], ood.shape)[valid].astype(np.uint8))
        for key, (labels, maps) in per_method.items():
            self.labels.setdefault(key, []).append(labels[valid])
            self.border.setdefault(key, []).append(border_mask(labels)[valid])
            for name, m in maps.items():
                self.scores.setdefault((key, name), []).append(np.asarray(m, dtype=np.float32)[valid])


@torch.no_grad()
def collect(scorer: TableScorer, dataset: Sequence[Any], *, limit: int | None = None) -> _Pixels:
    """Score every image of ``dataset`` (records with ``image`` and ``ood``) with every method of ``scorer``."""
    from moose_ros.eval.core import region_labels

    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n < 1:
        raise ConfigError("fp_breakdown: the OoD split holds no image")
    pixels = _Pixels()
    for i in range(n):
        sample = dataset[i]
        image = np.asarray(sample.image)
        per_method = {k: (labels[0].cpu().numpy(), {n: m[0].cpu().numpy() for n, m in maps.items()})
                      for k, (labels, maps) in scorer.maps(image).items()}
        pixels.add(region_labels(np.asarray(sample.ood), "image"), per_method)
    return pixels


def breakdown(pixels: _Pixels, classes: Sequence[str], tprs: Sequence[float]) -> list[dict[str, Any]]:
    """One record per (method key, score, tpr); fractions in [0, 1]."""
    anomaly = np.concatenate(pixels.anomaly)
    band = np.concatenate(pixels.band)
    if not anomaly.any() or anomaly.all():
        raise ConfigError("fp_breakdown: the split needs both anomaly and in-distribution pixels")
    inlier = ~anomaly
    rows = []
    for (key, name), parts in pixels.scores.items():
        score = np.concatenate(parts)
        labels = np.concatenate(pixels.labels[key])
        border = np.concatenate(pixels.border[key])
        ranked = np.sort(score[anomaly])[::-1]
        for tpr in tprs:
            # the highest threshold whose "score >= threshold" detects at least a fraction tpr of the anomaly
            # pixels: the operating point of the FPR-at-TPR metrics (FPR95 at tpr = 0.95)
            threshold = float(ranked[max(int(np.ceil(tpr * ranked.size)) - 1, 0)])
            fp = inlier & (score >= threshold)
            n = int(fp.sum())
            share = np.bincount(labels[fp], minlength=len(classes))[: len(classes)] / max(n, 1)
            rows.append({
                "key": key, "method": method_of(key), "seed": seed_of(key), "score": name, "tpr": float(tpr),
                "threshold": threshold, "fpr": n / int(inlier.sum()), "false_positives": n,
                "border_share": float(border[fp].mean()) if n else 0.0,
                "border_base": float(border[inlier].mean()),
                "band_share": {b: float((band[fp] == i).mean()) if n else 0.0 for i, b in enumerate(BANDS)},
                "class_share": {c: float(share[i]) for i, c in enumerate(classes)},
            })
    return rows


def _mean_pct(group: Sequence[dict[str, Any]], field: str, item: str | None = None) -> float:
    values = [r[field] if item is None else r[field][item] for r in group]
    return 100.0 * float(np.mean(values))


def format_markdown(rows: Sequence[dict[str, Any]], *, top: int = 5) -> str:
    """Mean over seeds per method, score and tpr, in %."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["score"], r["tpr"]), []).append(r)
    lines = ["| method | score | TPR | FPR | on class borders (all inliers) | rows top / mid / bottom | "
             "predicted classes of the false positives |", "|---|---|---|---|---|---|---|"]
    order = {m: i for i, m in enumerate(METHODS)}
    for (method, score, tpr), group in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1:])):
        classes = {c: _mean_pct(group, "class_share", c) for c in group[0]["class_share"]}
        named = ", ".join(f"{c} {v:.0f}" for c, v in sorted(classes.items(), key=lambda kv: -kv[1])[:top])
        bands = " / ".join(f"{_mean_pct(group, 'band_share', b):.0f}" for b in BANDS)
        lines.append(f"| {method} | {score} | {100 * tpr:.0f} | {_mean_pct(group, 'fpr'):.1f} | "
                     f"{_mean_pct(group, 'border_share'):.1f} ({_mean_pct(group, 'border_base'):.1f}) | "
                     f"{bands} | {named} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m moose_ros.train.fp_breakdown",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training recipe (data.ood_kind / data.ood_root)")
    parser.add_argument("--runs", required=True, help="directory with base.pt and seed<s>/probes.pt + refit.pt")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--scores", nargs="+", default=["max_logit", "entropy"],
                        help="score variants <score>[+bs] (sml is not offered: it needs training statistics)")
    parser.add_argument("--tpr", type=float, nargs="+", default=[0.5, 0.95], help="true-positive rates in (0, 1)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of the split")
    parser.add_argument("--json", default=None, help="write every number here (default RUNS/fp_breakdown.json)")
    parser.add_argument("--markdown", default=None, help="write the table here (default RUNS/fp_breakdown.md)")
    parser.add_argument("--threads", type=int, default=None)
    return parser


def _run(args: argparse.Namespace) -> None:
    from moose_ros.data import open_dataset
    from moose_ros.eval.variants import parse_variants
    from moose_ros.train.config import load_config

    if any(not 0.0 < t < 1.0 for t in args.tpr):
        raise ConfigError(f"--tpr: every value must lie in (0, 1), got {args.tpr}")
    variants = parse_variants(args.scores)
    if any(v.score == "sml" or v.road for v in variants):
        raise ConfigError(f"--scores: sml and +road variants are not offered here, got {args.scores}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    if cfg.data.ood_root is None:
        raise ConfigError(f"{args.config}: data.ood_root is not set; nothing to analyse")
    runs = Path(args.runs)
    scorer = TableScorer(runs, args.seeds, variants)
    ood = open_dataset(cfg.data.ood_kind, cfg.data.ood_root, cfg.data.ood_split)
    pixels = collect(scorer, ood, limit=args.limit)
    rows = breakdown(pixels, list(scorer.meta.classes), args.tpr)
    result = {"ood_root": cfg.data.ood_root, "ood_seed": cfg.data.ood_seed, "seeds": args.seeds,
              "images": len(pixels.anomaly), "scores": [v.name for v in variants], "rows": rows}
    md = format_markdown(rows)
    write_text_atomic(Path(args.json) if args.json else runs / "fp_breakdown.json", json.dumps(result, indent=1))
    write_text_atomic(Path(args.markdown) if args.markdown else runs / "fp_breakdown.md", md + "\n")
    print(md)


def main(argv: list[str] | None = None) -> int:
    """Command line: score the OoD split with every method and print where the false positives lie."""
    args = _parser().parse_args(argv)
    return run_cli("fp_breakdown", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
