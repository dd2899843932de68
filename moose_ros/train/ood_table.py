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
import torch.nn.functional as F

from moose_ros.errors import CheckpointError, MooseError

__all__ = ["SCORES", "evaluate_ood", "format_markdown", "main", "train_seeds", "write_bundle"]

log = logging.getLogger(__name__)

SCORES: tuple[str, ...] = ("max_logit", "entropy", "msp")
PROTOCOLS: tuple[str, ...] = ("pooled", "per_image")
REGIONS: tuple[str, ...] = ("road", "image")
METRICS: tuple[str, ...] = ("aupr", "fpr95", "auroc")


def region_labels(ood: np.ndarray, region: str) -> np.ndarray:
    """Labels uint8 [H, W] (0 in-distribution, 1 anomaly, 255 void) of Fishyscapes-layout ``ood`` for a region.

    ``road`` keeps the layout's void (off-road pixels); ``image`` counts every non-anomaly pixel as
    in-distribution.
    """
    if region == "road":
        return ood
    return (ood == 1).astype(np.uint8)
METHODS: tuple[str, ...] = ("Global", "Global-refit", "Best probe", "MOoSe")


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


def _trunk_state(model: torch.nn.Module, skip: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}


def _refit_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    from moose_ros.train.stages import refit_head

    head_ids = {id(p) for p in refit_head(model).parameters()}
    names = [n for n, p in model.named_parameters() if id(p) in head_ids]
    return tuple(sorted({n.rsplit(".", 1)[0] + "." for n in names}))


def _check_same_trunk(base: torch.nn.Module, other: torch.nn.Module, skip: tuple[str, ...], path: Path) -> None:
    a, b = _trunk_state(base, skip), _trunk_state(other, skip)
    differ = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    if differ:
        raise CheckpointError(f"{path}: its frozen network differs from the base checkpoint ({differ[:3]} ...); "
                              "it was not trained on this base")


def _up(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def evaluate_ood(
    runs: Path, seeds: list[int], ood_samples: Any, *, device: str = "cpu", progress: bool = True
) -> dict[str, Any]:
    """Score every method on ``ood_samples`` (``OodSample`` sequence); returns the raw metric dicts.

    Result layout: ``{"methods": {method: {score: {region: {protocol: [metrics per seed]}}}}, "best_probe":
    {seed: k},
    "val": {seed: probes-stage val record}, "num_images": n, "disagreement": {seed: {"disagree_anomaly",
    "disagree_inlier"}}}`` (fraction of anomaly / in-distribution pixels where some probe's arg-max differs from
    the global head's). ``Global`` has one entry (no seed).
    """
    from tqdm import tqdm

    from moose_ros.metrics import OodMetrics
    from moose_ros.model import load_checkpoint
    from moose_ros.scoring import compute_score
    from moose_ros.train.data import to_tensor
    from moose_ros.train.stages import refit_head

    base, meta = load_checkpoint(runs / "base.pt", map_location=device)
    skip_refit = _refit_prefixes(base)
    heads: dict[int, dict[str, Any]] = {}
    val: dict[int, Any] = {}
    for seed in seeds:
        probes_model, probes_meta = load_checkpoint(runs / f"seed{seed}" / "probes.pt", map_location=device)
        refit_model, _ = load_checkpoint(runs / f"seed{seed}" / "refit.pt", map_location=device)
        _check_same_trunk(base, probes_model, ("probes.",), runs / f"seed{seed}" / "probes.pt")
        _check_same_trunk(base, refit_model, ("probes.", *skip_refit), runs / f"seed{seed}" / "refit.pt")
        record = probes_meta.metrics.get("probes") or {}
        if record.get("best_probe") is None:
            raise CheckpointError(f"{runs}/seed{seed}/probes.pt: no val record to choose the best probe from")
        val[seed] = record
        heads[seed] = {"probes": probes_model.probes.eval(), "refit": refit_head(refit_model).eval(),
                       "best": int(record["best_probe"])}

    def new() -> dict[str, dict[str, OodMetrics]]:
        return {r: {p: OodMetrics(protocol=p, mode="exact") for p in PROTOCOLS} for r in REGIONS}

    acc: dict[str, dict[str, list[dict[str, dict[str, OodMetrics]]]]] = {
        m: {s: [new() for _ in ([0] if m == "Global" else seeds)] for s in SCORES} for m in METHODS
    }
    # head disagreement (any head's arg-max differs from the global head's) on anomaly / in-distribution pixels
    disagree = {seed: np.zeros(4, np.int64) for seed in seeds}  # [disagree_anomaly, anomaly, disagree_in, in]
    captured: list[torch.Tensor] = []
    hook = next(iter(refit_head(base).children())).register_forward_pre_hook(
        lambda _m, args: captured.append(args[0]))
    base.eval()
    try:
        for sample in tqdm(ood_samples, desc="ood", disable=not progress, dynamic_ncols=True):
            ood = np.asarray(sample.ood)
            size = ood.shape
            labels = {r: region_labels(ood, r) for r in REGIONS}
            x = to_tensor(np.asarray(sample.image), meta.mean, meta.std)[None].to(device)
            captured.clear()
            global_logits, feats = base.trunk_forward(x)
            refit_in = captured[-1]
            g = _up(global_logits, size)
            per_method: dict[str, list[list[torch.Tensor]]] = {"Global": [[g]]}
            for m in ("Global-refit", "Best probe", "MOoSe"):
                per_method[m] = []
            for seed in seeds:
                h = heads[seed]
                probes = [_up(p(f), size) for p, f in zip(h["probes"], feats, strict=True)]
                per_method["Global-refit"].append([_up(h["refit"](refit_in), size)])
                per_method["Best probe"].append([probes[h["best"]]])
                per_method["MOoSe"].append([g, *probes])
                g_arg = g.argmax(1)[0].cpu().numpy()
                differs = np.zeros(size, bool)
                for p in probes:
                    differs |= p.argmax(1)[0].cpu().numpy() != g_arg
                anomaly, inlier = ood == 1, ood == 0
                disagree[seed] += [int((differs & anomaly).sum()), int(anomaly.sum()),
                                   int((differs & inlier).sum()), int(inlier.sum())]
            for m, runs_heads in per_method.items():
                for i, hs in enumerate(runs_heads):
                    for s in SCORES:
                        score = compute_score(s, hs)[0].cpu().numpy().astype(np.float32)
                        for r in REGIONS:
                            for metric in acc[m][s][i][r].values():
                                metric.update(score, labels[r])
    finally:
        hook.remove()
    methods = {m: {s: {r: {p: [a[r][p].compute() for a in acc[m][s]] for p in PROTOCOLS} for r in REGIONS}
                   for s in SCORES} for m in METHODS}
    diversity = {seed: {"disagree_anomaly": float(c[0] / max(c[1], 1)), "disagree_inlier": float(c[2] / max(c[3], 1))}
                 for seed, c in disagree.items()}
    return {"methods": methods, "best_probe": {s: heads[s]["best"] for s in seeds}, "val": val,
            "num_images": len(ood_samples), "disagreement": diversity}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Mean and std (over seeds; population std) of each metric in %, per method, score, region and protocol."""
    out: dict[str, Any] = {}
    for m, by_score in raw["methods"].items():
        for s, by_region in by_score.items():
            for region, by_proto in by_region.items():
                for p, results in by_proto.items():
                    cell = out.setdefault(m, {}).setdefault(s, {}).setdefault(region, {}).setdefault(p, {})
                    for key in METRICS:
                        values = np.array([100.0 * r[key] for r in results], dtype=np.float64)
                        cell[key] = {"mean": float(values.mean()), "std": float(values.std()),
                                     "values": values.tolist()}
    return out


def format_markdown(summary: dict[str, Any], *, protocol: str, region: str, seeds: list[int]) -> str:
    """A Markdown table (rows = methods, columns = score x {AUPR, FPR95, AUROC}), mean ± std over seeds in %."""
    head = "| method | " + " | ".join(f"{s} AUPR ↑ | {s} FPR95 ↓ | {s} AUROC ↑" for s in SCORES) + " |"
    rule = "|---|" + "---|---|---|" * len(SCORES)
    rows = [head, rule]
    for m in METHODS:
        cells = []
        for s in SCORES:
            for key in METRICS:
                v = summary[m][s][region][protocol][key]
                cells.append(f"{v['mean']:.1f}" if m == "Global" else f"{v['mean']:.1f} ± {v['std']:.1f}")
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    note = (f"\n{region} region, {protocol} protocol; mean ± std over probe/refit seeds {seeds} (Global has no "
            "seed); higher AUPR / AUROC and lower FPR95 are better.")
    return "\n".join(rows) + note


def write_bundle(probes_ckpt: Path, out: Path, result: dict[str, Any], *, seed: int) -> Path:
    """Copy ``probes_ckpt`` to ``out`` with ``meta.metrics["ood_table"]`` = the summary (no raw curves)."""
    from moose_ros.model import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(probes_ckpt)
    compact = {m: {s: {r: {p: {k: {"mean": v["mean"], "std": v["std"]} for k, v in cell.items()}
                           for p, cell in by_p.items()} for r, by_p in by_r.items()} for s, by_r in by_s.items()}
               for m, by_s in result["summary"].items()}
    table = {"units": "percent", "seeds": result["seeds"], "bundled_seed": seed, "ood_kind": result["ood_kind"],
             "ood_seed": result["ood_seed"], "num_images": result["num_images"],
             "best_probe": result["best_probe"], "disagreement": result["disagreement"], "summary": compact}
    metrics = {**meta.metrics, "ood_table": table}
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, model, replace(meta, metrics=metrics))


def _operating_points(bundle: Path, root: str, seed: int | None, *, progress: bool) -> None:
    from moose_ros.data import open_dataset
    from moose_ros.train.operating_point import choose_operating_points, store_operating_points

    samples = open_dataset("fishyscapes_laf", root, None)
    points = choose_operating_points(bundle, samples, SCORES, progress=progress)
    split = {"root": str(root), "seed": seed, "images": len(samples), "region": "image",
             "criterion": "threshold: best pixel F1; display range: [median in-distribution, p95 anomaly]"}
    store_operating_points(bundle, points, split=split)
    for head_set, by_score in points.items():
        for s, p in by_score.items():
            log.info("operating point %s %s: threshold %.4f (F1 %.3f, P %.3f, R %.3f), display %s", head_set, s,
                     p["threshold"], p["f1"], p["precision"], p["recall"], [round(v, 3) for v in p["display_range"]])


def main(argv: list[str] | None = None) -> int:
    """Command line: optionally train the seeds, then evaluate and write the table."""
    parser = argparse.ArgumentParser(prog="python -m moose_ros.train.ood_table", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="training recipe (data.ood_kind / data.ood_root)")
    parser.add_argument("--runs", required=True, help="directory with base.pt (and seed<s>/ after training)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train", action="store_true", help="train probes + refit for each seed first")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", default=None, help="write all numbers here (default RUNS/ood_table.json)")
    parser.add_argument("--markdown", default=None, help="write the tables here (default RUNS/ood_table.md)")
    parser.add_argument("--bundle", default=None,
                        help="also write RUNS/seed<bundle-seed>/probes.pt with the OoD table in its meta here")
    parser.add_argument("--bundle-seed", type=int, default=None, help="seed of the bundled probes (first seed)")
    parser.add_argument("--operating-root", default=None,
                        help="OoD VALIDATION split (Fishyscapes layout) the bundle's default threshold and overlay "
                             "range are chosen on (never the test split); needs --bundle")
    parser.add_argument("--operating-seed", type=int, default=None, help="generator seed of that split (recorded)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from moose_ros.data import open_dataset
        from moose_ros.train.config import load_config

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        cfg = load_config(args.config, args.overrides)
        runs = Path(args.runs)
        timing = train_seeds(cfg, runs, args.seeds, progress=not args.no_progress) if args.train else {}
        if cfg.data.ood_root is None:
            raise MooseError(f"{args.config}: data.ood_root is not set; nothing to evaluate OoD on")
        ood = open_dataset(cfg.data.ood_kind, cfg.data.ood_root, cfg.data.ood_split)
        t0 = time.monotonic()
        raw = evaluate_ood(runs, args.seeds, ood, progress=not args.no_progress)
        summary = summarize(raw)
        result = {"seeds": args.seeds, "ood_kind": cfg.data.ood_kind, "ood_root": cfg.data.ood_root,
                  "ood_seed": cfg.data.ood_seed, "num_images": raw["num_images"], "best_probe": raw["best_probe"],
                  "val": raw["val"], "disagreement": raw["disagreement"], "summary": summary,
                  "raw": raw["methods"], "train_seconds": timing,
                  "eval_seconds": round(time.monotonic() - t0, 1)}
        json_path = Path(args.json) if args.json else runs / "ood_table.json"
        md_path = Path(args.markdown) if args.markdown else runs / "ood_table.md"
        json_path.write_text(json.dumps(result, indent=1, default=float), encoding="utf-8")
        md = "\n\n".join(format_markdown(summary, protocol=p, region=r, seeds=args.seeds)
                           for r in REGIONS for p in PROTOCOLS)
        md_path.write_text(md + "\n", encoding="utf-8")
        print(md)
        if args.bundle is not None:
            seed = args.bundle_seed if args.bundle_seed is not None else args.seeds[0]
            bundle = write_bundle(runs / f"seed{seed}" / "probes.pt", Path(args.bundle), result, seed=seed)
            if args.operating_root is not None:
                _operating_points(bundle, args.operating_root, args.operating_seed, progress=not args.no_progress)
    except MooseError as err:
        print(f"ood_table: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
