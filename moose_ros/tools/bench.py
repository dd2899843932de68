"""``moose bench infer | quality | node | metrics | memory``: every benchmark of the project, parsed here.

``infer`` (:mod:`moose_ros.bench.infer`): latency of the fused graphs; ``quality`` (:mod:`moose_ros.bench.quality`):
the fast post-processing against the exact one; ``node`` (:mod:`moose_ros.ros.bench`): end-to-end latency of the
node over loopback DDS; ``metrics`` (:mod:`moose_ros.bench.metrics`): throughput of the streaming OoD metrics;
``memory`` (:mod:`moose_ros.bench.memory`): the backend's memory after one large frame, ORT arena on vs off.

Examples::

    moose bench infer                                   # both architectures, 3 sizes, every available backend
    moose bench infer --archs deeplabv3_mobilenet_v3_large --sizes 480x640 --repeats 5 --threads 2 --out out/bench
    moose bench infer --checkpoint models/moose_synthstreet.pt --score max_logit --score entropy \
        --sizes 720x1280 1024x2048 --threads 1 --profile     # global vs MOoSe vs the graph of an earlier commit
    moose bench node --sizes 720x1280                   # HEIGHTxWIDTH, like every size on the command line
    moose bench metrics --size 1024x2048 --images 10
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "benchmarks: fused-graph inference (global vs MOoSe vs 5-member ensemble) or the ROS node end to end"

LOG = logging.getLogger(__name__)



def _add_infer(sub: argparse._SubParsersAction) -> None:
    from moose_ros.bench.infer import DEFAULT_VARIANTS, VARIANTS
    from moose_ros.scoring import GRAPH_SCORES

    p = sub.add_parser(
        "infer",
        help="median latency of global / MOoSe / ensemble graphs per backend, architecture and size",
        description="Exports random-weight graphs of each architecture and times them interleaved; prints a "
        "Markdown table and writes bench_infer.json + bench_infer.md.",
    )
    p.add_argument(
        "--archs",
        default="deeplabv3_mobilenet_v3_large,deeplabv3_resnet50",
        help="comma-separated architectures (default: the light default and ResNet-50 DeepLabV3)",
    )
    p.add_argument(
        "--sizes", nargs="+", default=["480x640", "720x1280", "1024x2048"], help="HxW image sizes (default: 3)"
    )
    p.add_argument(
        "--backends",
        default=None,
        help="comma-separated backends (default: every available ONNX one; add 'torch' for the eager reference)",
    )
    p.add_argument(
        "--variants",
        default=None,
        help=f"comma-separated subset of {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)}; with "
        "--checkpoint: global,moose, plus moose_before with --baseline-rev); 'score' = the score variants "
        "(max-logit, entropy, SML, SML + "
        "boundary suppression, + road gate) of a calibrated --checkpoint",
    )
    p.add_argument("--checkpoint", type=Path, default=None, help="benchmark this trained checkpoint instead of --archs")
    p.add_argument(
        "--input-size",
        default=None,
        help="HxW the graphs resize images to (default: the checkpoint's training size; native for --archs)",
    )
    p.add_argument(
        "--score",
        action="append",
        choices=GRAPH_SCORES,
        default=None,
        help="score(s) every variant exports (repeatable; default: each variant's own)",
    )
    p.add_argument(
        "--baseline-rev",
        default=None,
        metavar="REV",
        help="git revision whose moose_ros/export/fused.py builds variant moose_before (e.g. 79fad82, the first "
        "release's graph; needs a git checkout of the project; default: no moose_before)",
    )
    p.add_argument(
        "--profile", action="store_true", help="ONNX Runtime profiler per graph: Conv / network / post-processing share"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per size (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per size first (default 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per backend (default: runtime default)")
    p.add_argument("--ensemble-size", type=int, default=5, help="members of the deep ensemble (default 5)")
    p.add_argument("--num-classes", type=int, default=19, help="classes C (default 19, Cityscapes)")
    p.add_argument("--probe-width", type=int, default=None, help="probe width (default: the builder's)")
    p.add_argument("--probe-depth", type=int, default=None, help="probe depth (default: the builder's)")
    p.add_argument("--out", type=Path, default=Path("out/bench_infer"), help="output folder (default out/bench_infer)")
    p.add_argument("--keep-models", type=Path, default=None, help="export the graphs into this folder and keep them")
    p.set_defaults(_bench=_run_infer)


def _add_node(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("node", help="end-to-end latency of moose_node over loopback DDS")
    p.add_argument("--model", type=Path, default=None,
                   help="fused .onnx (default: the bundled model), or 'passthrough' for a no-compute graph")
    p.add_argument("--backend", default="auto", help="node backend (default auto)")
    p.add_argument("--threads", type=int, default=0, help="backend CPU threads (0 = backend default)")
    p.add_argument("--sizes", nargs="+", default=["720x1280", "1024x2048"],
                   help="input sizes HEIGHTxWIDTH (default 720x1280 1024x2048)")
    p.add_argument("--frames", type=int, default=30, help="closed-loop frames per size (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured frames per size first (default 3)")
    p.add_argument("--rate", type=float, default=30.0, help="overload publish rate in Hz (default 30)")
    p.add_argument("--overload-seconds", type=float, default=5.0, help="overload phase length, 0 = skip")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for one frame's outputs")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--log-dir", type=Path, default=None, help="node log folder (default: a temp folder)")
    p.add_argument("--check", action="store_true", help="exit with status 1 when a target is missed")
    p.set_defaults(_bench=_run_node)


def _run_node(args: argparse.Namespace) -> int:
    from moose_ros.errors import ConfigError
    from moose_ros.sizes import parse_size

    try:
        from moose_ros.ros import bench
    except ImportError as err:  # rclpy or the ROS message packages are missing: say so, with the reason
        raise ConfigError(f"moose bench node needs ROS 2 (rclpy and its messages): {err}") from err
    config = bench.NodeBenchConfig(
        model=args.model, backend=args.backend, threads=args.threads,
        sizes=tuple(parse_size(s, what="--sizes") for s in args.sizes), frames=args.frames, warmup=args.warmup,
        rate=args.rate, overload_seconds=args.overload_seconds, timeout=args.timeout, json=args.json,
        log_dir=args.log_dir, check=args.check,
    )
    return bench.run(config)


def _add_quality(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quality",
        help="labels and AUPR of the fast post-processing vs the exact full-resolution outputs on an OoD split",
        description="Runs a checkpoint once per image and post-processes the same logits at each --work "
        "resolution and exactly at the image size; prints label agreement and pooled AUPR / FPR95 per score.",
    )
    p.add_argument("checkpoint", type=Path, help="MOoSe checkpoint (.pt)")
    p.add_argument("--dataset", default="fishyscapes", help="dataset kind of --root (default fishyscapes)")
    p.add_argument("--root", type=Path, required=True, help="OoD dataset root (e.g. a `moose synth --ood` split)")
    p.add_argument(
        "--work",
        nargs="+",
        default=["feature", "input"],
        help="work resolutions: feature (the export default: scores at the feature resolution, labels at the "
        "network input size), input (both at the network input size), feature*<F> (both at F times the feature "
        "resolution); default feature input",
    )
    p.add_argument("--score", action="append", default=None, help="scores (default max_logit, entropy, msp)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.set_defaults(_bench=_run_quality)


def _run_quality(args: argparse.Namespace) -> int:
    import torch

    from moose_ros.bench.quality import compare_work_sizes, format_quality
    from moose_ros.data import open_dataset

    torch.set_num_threads(args.threads)
    report = compare_work_sizes(
        args.checkpoint,
        open_dataset(args.dataset, args.root),
        works=tuple(args.work),
        scores=tuple(args.score or ("max_logit", "entropy", "msp")),
        limit=args.limit,
    )
    print(format_quality(report))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Subcommands ``infer``, ``quality``, ``node``, ``metrics``, ``memory`` and ``int8``."""
    sub = parser.add_subparsers(dest="bench", metavar="{infer,quality,node,metrics,memory,int8}", required=True)
    _add_infer(sub)
    _add_quality(sub)
    _add_node(sub)
    _add_metrics(sub)
    _add_memory(sub)
    _add_int8(sub)


def _add_int8(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("int8", help="an int8 graph (moose export --int8) against its fp32 export: speed, mIoU, AUPR")
    p.add_argument("fp32", type=Path, help="fused fp32 .onnx")
    p.add_argument("int8", type=Path, help="the same checkpoint exported with --int8")
    p.add_argument("--val", type=Path, required=True, help="in-distribution dataset root with labels (val split)")
    p.add_argument("--val-dataset", default="cityscapes", help="layout of --val (default cityscapes)")
    p.add_argument("--ood", type=Path, required=True, help="OoD dataset root (e.g. a `moose synth --ood` split)")
    p.add_argument("--ood-dataset", default="fishyscapes", help="layout of --ood (default fishyscapes)")
    p.add_argument("--limit", type=int, default=None, help="first N images of each split")
    p.add_argument("--sizes", nargs="+", default=["720x1280"], help="HxW sizes of the speed rounds (720x1280)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per size (default 5)")
    p.add_argument("--threads", type=int, default=1, help="ORT threads per graph (default 1)")
    p.set_defaults(_bench=_run_int8)


def _run_int8(args: argparse.Namespace) -> int:
    from moose_ros.bench.int8 import compare_int8, format_int8
    from moose_ros.data import open_dataset
    from moose_ros.errors import ConfigError
    from moose_ros.sizes import parse_size

    for label, path in (("fp32", args.fp32), ("int8", args.int8)):
        if not path.is_file():
            raise ConfigError(f"{label} graph {path}: no such file")
    if args.repeats < 1 or (args.limit is not None and args.limit < 1):
        raise ConfigError("--repeats and --limit must be >= 1")
    sizes = [parse_size(text, what="--sizes") for text in args.sizes]
    val = open_dataset(args.val_dataset, args.val, "val")
    ood = open_dataset(args.ood_dataset, args.ood)
    pick = (lambda data: [data[i] for i in range(min(args.limit, len(data)))]) if args.limit else list
    report = compare_int8(args.fp32, args.int8, val=pick(val), ood=pick(ood), sizes=sizes, repeats=args.repeats,
                          threads=args.threads)
    print(format_int8(report))
    return 0


def _add_memory(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="RSS after one large frame, ONNX Runtime CPU arena on vs off")
    p.add_argument("--model", type=Path, default=None, help="fused .onnx (default: the bundled model)")
    p.add_argument("--size", default="720x1280", help="camera HxW (default 720x1280)")
    p.add_argument("--large", default="2896x5792", help="HxW of the one large frame (default 2896x5792)")
    p.add_argument("--frames", type=int, default=5, help="camera-size frames before and after it (default 5)")
    p.add_argument("--threads", type=int, default=None, help="ORT threads (default: ORT's)")
    p.set_defaults(_bench=_run_memory)


def _run_memory(args: argparse.Namespace) -> int:
    from moose_ros.bench.memory import format_memory_table, run_memory_bench
    from moose_ros.errors import ConfigError
    from moose_ros.resources import bundled_model_path
    from moose_ros.sizes import parse_size

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    size, large = parse_size(args.size, what="--size"), parse_size(args.large, what="--large")
    model = args.model if args.model is not None else bundled_model_path()
    if not Path(model).is_file():
        raise ConfigError(f"--model {model}: no such file")
    print(format_memory_table(run_memory_bench(Path(model), size, large, args.frames, args.threads), size, large))
    return 0


def _add_metrics(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("metrics", help="throughput of the streaming OoD metrics (Mpx/s, one core)")
    p.add_argument("--size", default="1024x2048", help="HxW of the score maps (default 1024x2048)")
    p.add_argument("--images", type=int, default=20, help="maps per mode (default 20)")
    p.add_argument("--bins", type=int, default=None, help="histogram bins (default 2**17)")
    p.set_defaults(_bench=_run_metrics)


def _run_metrics(args: argparse.Namespace) -> int:
    from moose_ros.bench.metrics import throughput_lines
    from moose_ros.errors import ConfigError
    from moose_ros.metrics.histogram import DEFAULT_BINS
    from moose_ros.sizes import parse_size

    if args.images < 1:
        raise ConfigError(f"--images must be >= 1, got {args.images}")
    height, width = parse_size(args.size, what="--size")
    for line in throughput_lines(height, width, args.images, args.bins or DEFAULT_BINS):
        print(line)
    return 0


def _run_infer(args: argparse.Namespace) -> int:
    from moose_ros.bench.infer import (
        DEFAULT_VARIANTS,
        SCORE_VARIANTS,
        BenchConfig,
        format_markdown,
        parse_sizes,
        run_benchmark,
        write_report,
    )
    from moose_ros.sizes import parse_size

    model_kwargs = {}
    if args.probe_width is not None:
        model_kwargs["probe_width"] = args.probe_width
    if args.probe_depth is not None:
        model_kwargs["probe_depth"] = args.probe_depth
    with_checkpoint = "global,moose,moose_before" if args.baseline_rev else "global,moose"
    variants = args.variants or (with_checkpoint if args.checkpoint else ",".join(DEFAULT_VARIANTS))
    if variants == "score":
        variants = ",".join(SCORE_VARIANTS)
    config = BenchConfig(
        archs=tuple(a.strip() for a in args.archs.split(",") if a.strip()),
        sizes=parse_sizes(args.sizes),
        backends=tuple(b.strip() for b in args.backends.split(",")) if args.backends else None,
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        ensemble_size=args.ensemble_size,
        num_classes=args.num_classes,
        model_kwargs=model_kwargs,
        workdir=args.keep_models,
        checkpoint=args.checkpoint,
        input_size=parse_size(args.input_size, what="--input-size") if args.input_size else None,
        scores=tuple(args.score) if args.score else None,
        baseline_rev=args.baseline_rev,
        profile=args.profile,
    )
    report = run_benchmark(
        config, progress=lambda line: print(line, flush=True), partial=lambda part: write_report(part, args.out)
    )
    json_path, md_path = write_report(report, args.out)
    print()
    print(format_markdown(report))
    print(f"wrote {json_path} and {md_path}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen benchmark."""
    return int(args._bench(args) or 0)
