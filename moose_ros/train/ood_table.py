"""The OoD table of a trained recipe: Global, Global-refit, best single probe and MOoSe over several seeds.

``python -m moose_ros.train.ood_table --config RECIPE --runs DIR --seeds 0 1 2 [--train]``

- ``--train`` first trains, for every seed ``s``, the probes and the Global-refit head on the frozen base
  network ``DIR/base.pt`` into ``DIR/seed<s>/`` with :func:`~moose_ros.train.trainer.train_stage` (one process,
  so the exact feature cache is computed once and shared).
- Then every method is scored on the held-out OoD split (``data.ood_kind`` / ``data.ood_root``): the trunk runs
  once per image; each seed's heads run on its features. Logits are upsampled to the label size (bilinear)
  before scoring, i.e. the exact full-resolution scores. Metrics: AUPR, FPR95 and AUROC, pooled and
  per-image, in two regions: ``road`` (the Fishyscapes LostAndFound protocol: only road and anomaly pixels
  count, everything off the road is void) and ``image`` (every pixel counts; anomaly = unknown object, the rest
  in-distribution, so glow on class borders, the horizon or far buildings costs precision).
- "Best probe" is chosen per seed on the **val split** (highest val mIoU recorded by the probes stage), never
  on the OoD split.

Writes ``--json`` (every number) and ``--markdown`` (mean ± std over seeds, in %).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moose_ros.errors import MooseError, run_cli
from moose_ros.eval.variants import ABLATION_VARIANTS, parse_variants
from moose_ros.outputs import write_text_atomic
from moose_ros.train.ood_heads import METHODS, TableScorer, method_of

__all__ = ["METHODS", "REGIONS", "evaluate_table", "format_markdown", "main", "summarize", "train_seeds",
           "write_bundle"]

log = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("pooled", "per_image")
#: Table regions and the evaluation core's names for them.
REGIONS: dict[str, str] = {"road": "layout", "image": "image"}
METRICS: tuple[str, ...] = ("aupr", "fpr95", "auroc")


def train_seeds(cfg: Any, runs: Path, seeds: list[int], *, progress: bool = True) -> dict[int, dict[str, float]]:
    """Train probes and the Global-refit head for each seed on ``runs/base.pt``; returns seconds per stage."""
    from moose_ros.train.trainer import train_stage

    base = runs / "base.pt"
    timing: dict[int, dict[str, float]] = {}
    for seed in seeds:
        seed_cfg = replace(cfg, seed=seed)
        out = runs / f"seed{seed}"
        timing[seed] = {}
        for stage in ("probes", "refit"):
            t0 = time.monotonic()
            train_stage(seed_cfg, stage, out, init=base, progress=progress)
            timing[seed][stage] = round(time.monotonic() - t0, 1)
            log.info("seed %d %s: %.0f s", seed, stage, timing[seed][stage])
    return timing


def evaluate_table(
    scorer: TableScorer, ood_samples: Any, *, progress: bool = True
) -> dict[str, dict[str, dict[str, dict[str, list[dict[str, Any]]]]]]:
    """``{method: {variant: {region: {protocol: [metric dict per seed]}}}}`` (Global: one entry) on the OoD split.

    One pass of :func:`moose_ros.eval.evaluate_ood` (the evaluation core shared with ``moose eval``) with every
    method key and variant of ``scorer``, both regions and both protocols (pooled curves from a 2**17-bin histogram
    per key, per-image metrics exact).
    """
    from moose_ros.eval import evaluate_ood

    result = evaluate_ood(scorer, ood_samples, protocols=PROTOCOLS, regions=tuple(REGIONS.values()),
                          component_keys=(), progress=progress, desc="ood table")
    table: dict[str, Any] = {}
    for (core_region, protocol), by_key in result.views.items():
        region = next(r for r, c in REGIONS.items() if c == core_region)
        for key, metrics in by_key.items():
            method_key, _, variant = key.partition("/")
            cell = table.setdefault(method_of(method_key), {}).setdefault(variant, {}).setdefault(region, {})
            cell.setdefault(protocol, []).append(metrics)
    return table


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Mean and std (over seeds; population std) of each metric in %, per method, variant, region and protocol."""
    out: dict[str, Any] = {}
    for m, by_variant in raw.items():
        for v, by_region in by_variant.items():
            for region, by_proto in by_region.items():
                for p, results in by_proto.items():
                    cell = out.setdefault(m, {}).setdefault(v, {}).setdefault(region, {}).setdefault(p, {})
                    for key in METRICS:
                        values = np.array([100.0 * r[key] for r in results], dtype=np.float64)
                        cell[key] = {"mean": float(values.mean()), "std": float(values.std()),
                                     "values": values.tolist()}
    return out


def format_markdown(summary: dict[str, Any], *, protocol: str, seeds: list[int]) -> str:
    """A Markdown table: rows = method x variant, columns = {road, image} x {AUPR, FPR95, AUROC}, in %."""
    head = "| method | score | " + " | ".join(f"{r} AUPR ↑ | {r} FPR95 ↓ | {r} AUROC ↑" for r in REGIONS) + " |"
    rows = [head, "|---|---|" + "---|---|---|" * len(REGIONS)]
    for m in METHODS:
        for v, by_region in summary.get(m, {}).items():
            cells = []
            for region in REGIONS:
                for key in METRICS:
                    c = by_region[region][protocol][key]
                    cells.append(f"{c['mean']:.1f}" if m == "Global" else f"{c['mean']:.1f} ± {c['std']:.1f}")
            rows.append(f"| {m} | {v} | " + " | ".join(cells) + " |")
    note = (f"\n{protocol} protocol; mean ± std over probe/refit seeds {seeds} (Global has no seed); `road`: only "
            "road and anomaly pixels count; `image`: every pixel counts. `+bs`: boundary suppression and dilated "
            "smoothing; `+road`: gated to the predicted drivable area.")
    return "\n".join(rows) + note


def write_bundle(probes_ckpt: Path, out: Path, result: dict[str, Any], *, seed: int) -> Path:
    """Copy ``probes_ckpt`` to ``out`` with ``meta.metrics["ood_table"]`` = the summary (means and stds only)."""
    from moose_ros.model import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(probes_ckpt)
    compact = {m: {v: {r: {p: {k: {"mean": c["mean"], "std": c["std"]} for k, c in cell.items()}
                           for p, cell in by_p.items()} for r, by_p in by_r.items()} for v, by_r in by_v.items()}
               for m, by_v in result["summary"].items()}
    table = {"units": "percent", "seeds": result["seeds"], "bundled_seed": seed, "ood_kind": result["ood_kind"],
             "ood_seed": result["ood_seed"], "num_images": result["num_images"],
             "best_probe": result["best_probe"], "summary": compact}
    metrics = {**meta.metrics, "ood_table": table}
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, model, replace(meta, metrics=metrics))


def _finish_bundle(bundle: Path, cfg: Any, args: argparse.Namespace, variants: Any) -> None:
    """SML statistics on training images, then operating points on the OoD validation split, into the bundle."""
    from moose_ros.calibrate import sml_statistics, write_sml_calibration
    from moose_ros.data import open_dataset
    from moose_ros.train.operating_point import choose_operating_points, store_operating_points

    train = open_dataset(cfg.data.kind, cfg.data.root, cfg.data.train_split)
    stats = sml_statistics(bundle, train, limit=args.sml_images, input_size=None)
    write_sml_calibration(bundle, stats, data=f"{cfg.data.root} ({cfg.data.train_split})")
    if args.operating_root is None:
        return
    samples = open_dataset("fishyscapes_laf", args.operating_root, None)
    points = choose_operating_points(bundle, samples, variants, road_classes=args.road_classes,
                                     progress=not args.no_progress)
    split = {"root": str(args.operating_root), "seed": args.operating_seed, "images": len(samples),
             "region": "image",
             "criterion": "threshold: best pixel F1; display range: [median in-distribution, p95 anomaly]"}
    store_operating_points(bundle, points, split=split)
    for head_set, by_variant in points.items():
        for v, p in by_variant.items():
            log.info("operating point %s %s: threshold %.4f (F1 %.3f, P %.3f, R %.3f), display %s", head_set, v,
                     p["threshold"], p["f1"], p["precision"], p["recall"], [round(x, 3) for x in p["display_range"]])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m moose_ros.train.ood_table", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training recipe (data.ood_kind / data.ood_root)")
    parser.add_argument("--runs", required=True, help="directory with base.pt (and seed<s>/ after training)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", action="store_true", help="train probes + refit for each seed first")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--variants", nargs="+", default=[v.name for v in ABLATION_VARIANTS],
                        help="score variants <score>[+bs][+road] (default: the ablation set)")
    parser.add_argument("--road-classes", default="road,sidewalk", help="drivable classes of the +road gate")
    parser.add_argument("--sml-images", type=int, default=200,
                        help="training images the per-method SML statistics are measured on")
    parser.add_argument("--json", default=None, help="write all numbers here (default RUNS/ood_table.json)")
    parser.add_argument("--markdown", default=None, help="write the tables here (default RUNS/ood_table.md)")
    parser.add_argument("--bundle", default=None,
                        help="also write RUNS/seed<bundle-seed>/probes.pt with the OoD table in its meta here")
    parser.add_argument("--bundle-seed", type=int, default=None, help="seed of the bundled probes (first seed)")
    parser.add_argument("--operating-root", default=None,
                        help="OoD VALIDATION split (Fishyscapes layout) the bundle's default thresholds and overlay "
                             "ranges are chosen on, per variant (never the test split); needs --bundle")
    parser.add_argument("--operating-seed", type=int, default=None, help="generator seed of that split (recorded)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _run(args: argparse.Namespace) -> None:
    from moose_ros.data import open_dataset
    from moose_ros.train.config import load_config

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    variants = parse_variants(args.variants)
    args.road_classes = [c.strip() for c in args.road_classes.split(",") if c.strip()]
    runs = Path(args.runs)
    timing = train_seeds(cfg, runs, args.seeds, progress=not args.no_progress) if args.train else {}
    if cfg.data.ood_root is None:
        raise MooseError(f"{args.config}: data.ood_root is not set; nothing to evaluate OoD on")
    ood = open_dataset(cfg.data.ood_kind, cfg.data.ood_root, cfg.data.ood_split)
    t0 = time.monotonic()
    scorer = TableScorer(runs, args.seeds, variants, road_classes=args.road_classes)
    if any(v.score == "sml" for v in variants):
        scorer.calibrate(open_dataset(cfg.data.kind, cfg.data.root, cfg.data.train_split), args.sml_images)
    raw = evaluate_table(scorer, ood, progress=not args.no_progress)
    summary = summarize(raw)
    result = {"seeds": args.seeds, "ood_kind": cfg.data.ood_kind, "ood_root": cfg.data.ood_root,
              "ood_seed": cfg.data.ood_seed, "num_images": len(ood), "best_probe": scorer.best, "val": scorer.val,
              "variants": [v.name for v in variants], "road_classes": args.road_classes,
              "sml_images": args.sml_images, "summary": summary, "raw": raw, "train_seconds": timing,
              "eval_seconds": round(time.monotonic() - t0, 1)}
    json_path = Path(args.json) if args.json else runs / "ood_table.json"
    md_path = Path(args.markdown) if args.markdown else runs / "ood_table.md"
    write_text_atomic(json_path, json.dumps(result, indent=1, default=float))
    md = "\n\n".join(format_markdown(summary, protocol=p, seeds=args.seeds) for p in PROTOCOLS)
    write_text_atomic(md_path, md + "\n")
    print(md)
    if args.bundle is not None:
        seed = args.bundle_seed if args.bundle_seed is not None else args.seeds[0]
        bundle = write_bundle(runs / f"seed{seed}" / "probes.pt", Path(args.bundle), result, seed=seed)
        _finish_bundle(bundle, cfg, args, variants)


def main(argv: list[str] | None = None) -> int:
    """Command line: optionally train the seeds, then evaluate and write the table."""
    args = _parser().parse_args(argv)
    return run_cli("ood_table", lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
