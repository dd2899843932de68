"""``moose eval``: offline evaluation of Global vs MOoSe on an anomaly (or segmentation) dataset.

Examples::

    moose eval --model models/moose_synthstreet.pt --dataset lostandfound --root data/synth --split test \\
        --out out/eval_laf --gallery 8
    moose eval --model moose.onnx --global-model global.onnx --dataset fishyscapes --root FS_LaF --out out/fs
    moose eval --model ckpt.pt --dataset cityscapes --root cityscapes --split val --out out/cs --limit 50

With a checkpoint (``.pt``) both rows of the paper's Table 1 come from one forward pass per image: Global (the
global head alone) and MOoSe (global head + probes), for every ``--score``. With ONNX graphs each file is one
row (``--global-model`` for a ``moose export --heads global`` graph); the scores are those baked into the graph.
Anomaly datasets (``ood`` masks) give AUPR / FPR95 / AUROC and SMIYC component metrics; segmentation datasets
(``cityscapes``) give mIoU per head, ECE and head diversity. Output: REPORT_DIR/report.md, report.json,
pr_curves.png, gallery/NNN.png.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

from moose_ros.errors import ConfigError
from moose_ros.scoring import SCORE_NAMES

__all__ = ["DATASETS", "HELP", "add_arguments", "run"]

HELP = "evaluate Global vs MOoSe anomaly scores on a dataset (AUPR, FPR95, AUROC, SMIYC; Markdown/JSON/PNG report)"
LOG = logging.getLogger(__name__)

DATASETS = ("lostandfound", "fishyscapes", "roadanomaly", "streethazards", "bdd", "cityscapes")
#: The paper's protocol per dataset when ``--protocol auto``: per-image on CAOS, pooled on the SMIYC family.
_AUTO_PROTOCOL = {"streethazards": "per_image", "bdd": "per_image"}
_DEFAULT_SCORES = ("max_logit", "entropy", "msp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moose eval``."""
    parser.add_argument("--model", type=Path, required=True, help="checkpoint (.pt) or fused graph (.onnx)")
    parser.add_argument(
        "--global-model", type=Path, default=None, help="ONNX graph exported with --heads global (the Global row)"
    )
    parser.add_argument("--dataset", choices=DATASETS, required=True, help="dataset layout under --root")
    parser.add_argument("--root", type=Path, required=True, help="dataset root folder")
    parser.add_argument("--split", default=None, help="dataset split (default: the reader's, e.g. test)")
    parser.add_argument(
        "--protocol",
        choices=("auto", "pooled", "per-image"),
        default="auto",
        help="pooled (one curve over all pixels: SMIYC/Fishyscapes) or per-image (mean over images: "
        "StreetHazards/CAOS, the paper); auto = per-image for streethazards/bdd, else pooled",
    )
    parser.add_argument("--out", type=Path, required=True, help="report directory (created)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--gallery", type=int, default=8, help="gallery rows (0 = none; default 8)")
    parser.add_argument(
        "--score",
        action="append",
        choices=SCORE_NAMES,
        default=None,
        help="score to evaluate with a checkpoint (repeatable; default max_logit, entropy, msp)",
    )
    parser.add_argument(
        "--mode",
        choices=("hist", "exact"),
        default="hist",
        help="hist: bounded memory, 2^17-bin histograms (default); exact: sklearn-identical, keeps every score "
        "in memory with the pooled protocol",
    )
    parser.add_argument("--bins", type=int, default=1 << 17, help="histogram bins (even; default 131072)")
    parser.add_argument("--score-resolution", choices=("feature", "input", "full"), default="feature")
    parser.add_argument("--input-size", default="native", help="HxW resize before the network, native or checkpoint")
    parser.add_argument("--device", default="cpu", help="torch device for checkpoints (cpu, cuda)")
    parser.add_argument("--backend", default="onnxruntime-cpu", help="backend for ONNX graphs (make_backend name)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch / ONNX Runtime)")
    parser.add_argument("--no-components", action="store_true", help="skip the SMIYC component metrics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _input_size(text: str) -> Any:
    from moose_ros.sizes import parse_size

    if text in ("native", "checkpoint"):
        return None if text == "native" else "checkpoint"
    return parse_size(text, what="--input-size")


def _make_scorer(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(scorer, model description for the report)."""
    suffix = args.model.suffix.lower()
    if not args.model.is_file():
        raise ConfigError(f"--model {args.model} does not exist")
    if suffix == ".pt":
        if args.global_model is not None:
            raise ConfigError("--global-model is for ONNX graphs; a checkpoint gives Global and MOoSe by itself")
        import torch

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        from moose_ros.eval.scorers import TorchMooseScorer

        scorer = TorchMooseScorer(
            args.model,
            scores=tuple(args.score or _DEFAULT_SCORES),
            score_resolution=args.score_resolution,
            input_size=_input_size(args.input_size),
            device=args.device,
        )
        meta = scorer.checkpoint_meta
        info = {
            "model": str(args.model),
            "architecture": getattr(meta, "architecture", "?"),
            "probes": scorer.num_probes,
            "scores": ", ".join(scorer.scores),
            "score resolution": args.score_resolution,
        }
        return scorer, info
    if suffix == ".onnx":
        if args.score:
            raise ConfigError("--score applies to checkpoints; an ONNX graph is scored with the scores baked into it")
        if args.input_size != "native":
            raise ConfigError(f"--input-size {args.input_size!r} applies to checkpoints; an ONNX graph resizes to "
                              "the input size it was exported with (moose export --input-size)")
        from moose_ros.backends.onnx_meta import read_meta
        from moose_ros.eval.scorers import OnnxScorer

        models: dict[str, Path] = {}
        if args.global_model is not None:
            models["Global"] = args.global_model
            models["MOoSe"] = args.model
        else:
            models["MOoSe" if read_meta(args.model).num_probes > 0 else "Global"] = args.model
        scorer = OnnxScorer(models, backend=args.backend, threads=args.threads)
        info = {
            f"model ({m})": f"{p} (K={scorer.metas[m].num_probes}, scores {', '.join(scorer.metas[m].scores)})"
            for m, p in models.items()
        }
        return scorer, info
    raise ConfigError(f"--model {args.model}: expected a .pt checkpoint or an .onnx graph")


def _open(args: argparse.Namespace) -> Any:
    from moose_ros.data import open_dataset

    return open_dataset(args.dataset, args.root, args.split)


def _check_options(args: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` for an option out of range, before any file is read or written."""
    from moose_ros.outputs import check_report_dir

    for option, value, minimum in (("--limit", args.limit, 1), ("--gallery", args.gallery, 0),
                                   ("--threads", args.threads, 1), ("--bins", args.bins, 2)):
        if value is not None and value < minimum:
            raise ConfigError(f"{option} must be >= {minimum}, got {value}")
    if args.bins % 2:
        raise ConfigError(f"--bins must be even, got {args.bins}")
    _input_size(args.input_size)
    check_report_dir(args.out, "--out")


def _segmentation(args: argparse.Namespace, scorer: Any, dataset: Any) -> dict[str, Any]:
    """Per-head mIoU and calibration on a segmentation dataset (checkpoints only: per-head probabilities)."""
    from moose_ros.eval.segmentation import evaluate_segmentation

    if not hasattr(scorer, "head_probs"):
        raise ConfigError("segmentation datasets need a checkpoint (.pt): per-head probabilities are required")
    return evaluate_segmentation(
        lambda image, size: scorer.head_probs(image, size)[1],
        dataset,
        int(scorer.fused.model.num_classes),
        ignore_index=getattr(scorer.checkpoint_meta, "ignore_index", 255),
        limit=args.limit,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report and print the main table."""
    _check_options(args)
    from moose_ros.eval import evaluate_ood, write_report

    t0 = time.perf_counter()
    dataset = _open(args)
    scorer, model_info = _make_scorer(args)
    protocol = _AUTO_PROTOCOL.get(args.dataset, "pooled") if args.protocol == "auto" else args.protocol
    protocol = protocol.replace("-", "_")
    n_total = len(dataset)
    results: dict[str, Any] = {"title": f"MOoSe evaluation: {args.dataset} ({args.split or 'default split'})"}
    summary: dict[str, Any] = {
        "dataset": f"{args.dataset} at {args.root}, split {args.split or 'default'}",
        **model_info,
    }
    curves = None
    gallery = None
    first = dataset[0] if n_total else None
    if first is not None and hasattr(first, "ood"):
        ev = evaluate_ood(
            scorer,
            dataset,
            protocol,
            mode=args.mode,
            bins=args.bins,
            limit=args.limit,
            gallery=args.gallery,
            component_keys=() if args.no_components else None,
            progress=not args.no_progress,
        )
        summary.update(
            {
                "protocol": protocol,
                "metric mode": f"{args.mode}" + (f" ({args.bins} bins)" if args.mode == "hist" else ""),
                "images": f"{ev.num_images} of {n_total}",
                "time": f"{ev.seconds:.1f} s ({1e3 * ev.score_seconds / max(ev.num_images, 1):.0f} ms/image scoring)",
            }
        )
        results.update(
            ood=ev.table("metrics"),
            components=ev.table("components"),
            timing={"seconds": ev.seconds, "score_ms_per_image": 1e3 * ev.score_seconds / max(ev.num_images, 1)},
        )
        curves, gallery = ev.curves, ev.gallery
    elif first is not None and hasattr(first, "label"):
        seg = _segmentation(args, scorer, dataset)
        summary.update(images=f"{seg['num_images']} of {n_total}", time=f"{seg['seconds']:.1f} s")
        results.update(segmentation=seg["segmentation"], calibration=seg["calibration"])
    else:
        raise ConfigError(f"dataset {args.dataset} at {args.root} holds no images")
    results["summary"] = summary
    paths = write_report(args.out, results, curves, gallery)
    print(paths["markdown"].read_text(encoding="utf-8").split("## Curves")[0].rstrip())
    print(f"\nreport: {paths['markdown']} ({time.perf_counter() - t0:.1f} s)")
    close = getattr(scorer, "close", None)
    if close is not None:
        close()
    return 0
