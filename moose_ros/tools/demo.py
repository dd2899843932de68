"""``moose demo``: SynthStreet drive -> rosbag2 -> the real node over DDS -> Global vs MOoSe table and report.

Steps (each timed on the terminal):

1. render a short SynthStreet drive with unknown objects on the road, in the LostAndFound layout;
2. write it into a rosbag2 (mcap: ``/camera/image`` rgb8, ``/camera/camera_info``, ``/camera/ood_gt``);
3. replay the bag into ``moose_node`` (loopback DDS profile, own domain) once per method and score, at max
   speed (nothing dropped) unless ``--rate-scale`` is given, and score the node's ``~/anomaly`` outputs against
   the ground truth.

MOoSe = the bundled fused graph (global head + K probes). Global = the *same checkpoint's* global head alone:
``<model>_global.onnx`` beside the MOoSe graph when shipped, else exported from ``<model>.pt`` with
``heads="global"`` (cached under ``<out>/models``), or ``--global-model``. It runs through the same node on the
same bag: both rows come from the same pipeline, so the difference is the probes and nothing else.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from moose_ros.sizes import parse_size

__all__ = ["HELP", "add_arguments", "run"]

HELP = "end-to-end demo: SynthStreet drive -> rosbag2 -> moose_node over DDS -> Global vs MOoSe report"

log = logging.getLogger(__name__)

#: scores compared by default (max-logit: the node's default; entropy: where probe disagreement shows most)
#: ``--scores`` default: every score the model exports except the road-gated copies (those feed the mask).
DEFAULT_SCORES = "model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moose demo`` (all have working defaults)."""
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output directory (default out/demo)")
    parser.add_argument("--frames", type=int, default=40, help="frames in the drive (default 40)")
    parser.add_argument("--size", default="256x512", help="HEIGHTxWIDTH of the drive's images (default 256x512)")
    parser.add_argument("--seed", type=int, default=2026, help="SynthStreet seed of the drive (default 2026)")
    parser.add_argument("--model", type=Path, default=None, help="MOoSe ONNX (default: the bundled model)")
    parser.add_argument(
        "--global-model",
        type=Path,
        default=None,
        help="global-only ONNX (default: exported from the bundled checkpoint with heads=global)",
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint for the Global export")
    parser.add_argument("--no-global", action="store_true", help="run MOoSe only")
    parser.add_argument(
        "--scores",
        default=DEFAULT_SCORES,
        help="comma-separated scores exported in the model, 'all', or 'model' (default: the model's scores "
        "without the road-gated copies; each score is one node run per model)",
    )
    parser.add_argument(
        "--rate-scale",
        type=float,
        default=None,
        help="replay at the recorded 10 Hz times this factor instead of max speed (frames may drop)",
    )
    parser.add_argument("--threads", type=int, default=None, help="inference threads of the node")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a fresh one per run)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _step(text: str) -> float:
    print(f"[demo] {text}", flush=True)
    return time.monotonic()


def _global_model(args: argparse.Namespace, moose_model: Path, meta: Any, models_dir: Path) -> tuple[Path | None, str]:
    """(global-only ONNX or None, how it was obtained)."""
    from moose_ros.backends.onnx_meta import file_sha256, read_meta

    if args.global_model is not None:
        _check_same_network(read_meta(args.global_model), meta, args.global_model)
        return args.global_model, f"given: {args.global_model}"
    shipped = moose_model.with_name(f"{moose_model.stem}_global.onnx")
    if args.checkpoint is None and shipped.is_file():  # a global-only export shipped beside the MOoSe graph
        _check_same_network(read_meta(shipped), meta, shipped)
        return shipped, f"global head shipped as {shipped.name}"
    # the checkpoint the MOoSe graph was exported from sits beside it (models/moose_synthstreet.pt)
    checkpoint = args.checkpoint if args.checkpoint is not None else moose_model.with_suffix(".pt")
    if not checkpoint.is_file():
        return None, f"no checkpoint {checkpoint} to export the global head from"
    key = file_sha256(checkpoint)[:12]
    out = models_dir / f"{checkpoint.stem}_global_{key}_{'-'.join(meta.scores)}.onnx"
    if out.is_file():
        _check_same_network(read_meta(out), meta, out)
        return out, f"global head of {checkpoint.name} (cached export {out})"
    try:
        from moose_ros.export import export_onnx
        from moose_ros.export.postprocess import BoundarySuppression
    except ImportError as err:
        return None, f"exporting the global head needs torch ({err}); install the 'train' extra"
    t0 = _step(f"exporting the global head of {checkpoint} (heads=global) ...")
    post = meta.extra.get("postprocess") or {}
    boundary = post.get("boundary_suppression")
    export_onnx(
        checkpoint,
        out,
        scores=[s for s in meta.scores if not s.endswith("_road")],  # the gated copies come from road_classes
        input_size=meta.input_size,
        output_size=meta.output_size,
        score_resolution=meta.score_resolution,
        heads="global",
        check_tensorrt=False,
        boundary=BoundarySuppression(**boundary) if boundary else None,
        road_classes=post.get("road_classes"),
    )
    _check_same_network(read_meta(out), meta, out)
    print(f"[demo]   done in {time.monotonic() - t0:.1f} s -> {out}")
    return out, f"global head of {checkpoint.name}, exported with heads=global"


def _check_same_network(global_meta: Any, moose_meta: Any, path: Path) -> None:
    """Global and MOoSe must be the same network (architecture, classes), Global without probes."""
    from moose_ros.errors import ConfigError

    if global_meta.num_probes != 0:
        raise ConfigError(f"{path}: the Global model must be global-only (num_probes 0), has {global_meta.num_probes}")
    if (global_meta.architecture, global_meta.classes) != (moose_meta.architecture, moose_meta.classes):
        raise ConfigError(
            f"{path}: Global is {global_meta.architecture} with {global_meta.num_classes} classes but MOoSe is "
            f"{moose_meta.architecture} with {moose_meta.num_classes}; they must come from the same checkpoint"
        )


def _table(results: list[Any]) -> str:
    head = (
        "| method | score | pooled AUPR | pooled FPR95 | pooled AUROC | per-image AUPR | per-image FPR95 "
        "| latency p50 / p95 ms | fps | dropped |"
    )
    rows = [head, "|" + "---|" * 10]
    for r in results:
        pooled, per = r.pooled or {}, r.per_image or {}

        def pct(m: dict[str, Any], key: str) -> str:
            value = m.get(key)
            return "n/a" if value is None or value != value else f"{100 * value:.2f}"

        rows.append(
            f"| {r.method} | {r.score} | {pct(pooled, 'aupr')} | {pct(pooled, 'fpr95')} | {pct(pooled, 'auroc')} "
            f"| {pct(per, 'aupr')} | {pct(per, 'fpr95')} | {r.latency_ms['p50']:.0f} / {r.latency_ms['p95']:.0f} "
            f"| {r.fps:.1f} | {r.frames_dropped}/{r.frames_sent} |"
        )
    return "\n".join(rows)


def _chosen_scores(requested: str, meta: Any, model: Path) -> tuple[str, ...]:
    """The scores to replay: ``all``, ``model`` (without the road-gated copies) or a comma list."""
    from moose_ros.errors import ConfigError

    if requested == "all":
        return tuple(meta.scores)
    if requested == "model":
        return tuple(s for s in meta.scores if not s.endswith("_road"))
    scores = tuple(s.strip() for s in requested.split(",") if s.strip())
    unknown = [s for s in scores if s not in meta.scores]
    if unknown:
        raise ConfigError(f"--scores {','.join(unknown)} not exported in {model}; it has {','.join(meta.scores)}")
    return scores


def _replay_all(
    args: argparse.Namespace, bag_path: Path, methods: list[tuple[str, Path]], scores: tuple[str, ...], logs: Path
) -> list[Any]:
    """Replay the bag through the node once per (model, score); returns the results in that order."""
    from moose_ros.bag.evaluate import ReplayOptions, replay_bag

    max_speed = args.rate_scale is None
    results = []
    for method, model in methods:
        for score in scores:
            options = ReplayOptions(
                max_speed=max_speed, rate_scale=1.0 if max_speed else args.rate_scale, threads=args.threads,
                domain_id=args.domain_id, node_params={"score": score}, progress=not args.no_progress,
            )
            t0 = time.monotonic()
            result = replay_bag(bag_path, model, options, method=method, log_dir=logs / f"{method}_{score}")
            print(f"[demo]   {method} / {score}: {result.frames_answered}/{result.frames_sent} answered, "
                  f"{time.monotonic() - t0:.1f} s")
            results.append(result)
    return results


def run(args: argparse.Namespace) -> int:
    """Run the demo; returns 0 on success (raises MooseError with the failing step otherwise)."""
    from moose_ros.backends.onnx_meta import read_meta
    from moose_ros.bag.from_dataset import BagWriteOptions, write_bag
    from moose_ros.bag.report import write_bag_report
    from moose_ros.data import open_dataset
    from moose_ros.data.synth import write_synthstreet
    from moose_ros.errors import ConfigError
    from moose_ros.resources import bundled_model_path

    if args.frames < 2:
        raise ConfigError(f"--frames must be >= 2, got {args.frames}")
    t_start = time.monotonic()
    out: Path = args.out
    data_root, bag_path, report_dir = out / "synthstreet", out / "demo.bag", out / "report"
    moose_model = args.model if args.model is not None else bundled_model_path()
    meta = read_meta(moose_model)
    scores = _chosen_scores(args.scores, meta, moose_model)
    height, width = parse_size(args.size, what="--size")
    for path in (data_root, bag_path, report_dir, out / "logs"):  # a previous demo's outputs (models/ stays)
        shutil.rmtree(path, ignore_errors=True)
    t0 = _step(f"1/3 rendering a {args.frames}-frame SynthStreet drive ({height}x{width}) into {data_root}")
    write_synthstreet(
        data_root, split="test", count=1, layout="lostandfound", seed=args.seed, height=height,
        width=width, ood=True, sequence=args.frames, progress=not args.no_progress,
    )
    print(f"[demo]   {time.monotonic() - t0:.1f} s")
    t0 = _step(f"2/3 writing the rosbag2 {bag_path} (10 Hz, mcap)")
    summary = write_bag(open_dataset("lostandfound", data_root, "test"), bag_path,
                        BagWriteOptions(rate_hz=10.0), progress=not args.no_progress)
    print(f"[demo]   {summary.frames} frames in {time.monotonic() - t0:.1f} s")

    methods: list[tuple[str, Path]] = [("MOoSe", moose_model)]
    global_note = "skipped (--no-global)"
    if not args.no_global:
        global_model, global_note = _global_model(args, moose_model, meta, out / "models")
        if global_model is not None:
            methods.insert(0, ("Global", global_model))
    print(f"[demo]   MOoSe: {moose_model} ({meta.architecture}, K={meta.num_probes} probes)")
    print(f"[demo]   Global: {global_note}")

    max_speed = args.rate_scale is None
    pace = "max speed (next frame after each answer)" if max_speed else f"{10 * args.rate_scale:g} Hz"
    _step(f"3/3 replaying through moose_node over DDS at {pace}: {len(methods)} models x {len(scores)} scores")
    results = _replay_all(args, bag_path, methods, scores, out / "logs")
    paths = write_bag_report(report_dir, results, title="moose demo: Global vs MOoSe through moose_node",
                             notes=[
                                 f"Data: SynthStreet drive, seed {args.seed}, {summary.frames} frames "
                                 f"{height}x{width}, unknown objects on the road.",
                                 f"MOoSe: {moose_model}. Global: {global_note}.",
                                 f"Both through moose_node over DDS (loopback), replay at {pace}.",
                             ])
    print()
    print(_table(results))
    print()
    print("Global = the same checkpoint's global head alone; MOoSe = global head + probes averaged. Both ran through")
    print("the node on the same bag; metrics: pooled and per-image AUPR / FPR95 / AUROC in %, higher AUPR is better.")
    print(f"One {summary.frames}-frame drive, so differences of a few points are not significant; the bundled model's "
          "held-out OoD table over probe seeds is models/ood_table.md.")
    print(f"report: {paths['markdown']}  (JSON {paths['json']})")
    print(f"[demo] total {time.monotonic() - t_start:.1f} s")
    return 0
