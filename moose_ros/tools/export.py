"""``moose export``: a checkpoint -> the fused ONNX graph every backend runs.

Examples::

    moose export models/moose_synthstreet.pt -o models/moose_synthstreet.onnx
    moose export ckpt.pt -o model.onnx --score max_logit --score entropy --input-size 512x1024 --score-resolution full
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moose_ros.scoring import GRAPH_SCORES
from moose_ros.sizes import parse_size

__all__ = ["HELP", "add_arguments", "run"]

HELP = "export a checkpoint to the fused ONNX graph (uint8 image in; labels + anomaly scores out)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moose export``."""
    parser.add_argument("checkpoint", type=Path, help="MOoSe checkpoint (.pt) written by `moose train`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--score",
        action="append",
        choices=GRAPH_SCORES,
        default=None,
        help="anomaly score to bake in (repeatable; the first is output 'anomaly', the others "
        "'anomaly_<name>'; default max_logit; sml needs `moose calibrate` first)",
    )
    parser.add_argument(
        "--input-size",
        default="native",
        help="HxW the graph resizes images to before the network; 'native' (default: no resize) or "
        "'checkpoint' (the training input size recorded in the checkpoint)",
    )
    parser.add_argument("--output-size", default=None, help="HxW of the outputs (default: the input image size)")
    parser.add_argument(
        "--score-resolution",
        choices=("feature", "input", "full"),
        default="feature",
        help="where scores and labels are computed before single-channel maps are upsampled: scores at feature "
        "resolution and labels at the network input size (feature, default, fastest), both at the network input "
        "size (input) or both at the output size (full, exact, slow at camera sizes)",
    )
    parser.add_argument("--heads", choices=("moose", "global"), default="moose", help="moose (default) or global only")
    parser.add_argument(
        "--boundary-suppression",
        action="store_true",
        help="suppress scores on predicted class borders and smooth them (dilated Gaussian), every score",
    )
    parser.add_argument(
        "--road-gate",
        default=None,
        metavar="CLASSES",
        help="comma-separated drivable classes (names or ids, e.g. road,sidewalk): adds anomaly_<score>_road "
        "outputs, each score at its image minimum outside that region (enclosed holes filled)",
    )
    parser.add_argument("--static-batch", action="store_true", help="fix N = 1 (default: dynamic batch)")
    parser.add_argument("--no-tensorrt-check", action="store_true", help="skip the static TensorRT-compatibility check")


def run(args: argparse.Namespace) -> int:
    """Export and print a one-line summary."""
    from moose_ros.errors import ConfigError
    from moose_ros.outputs import check_output_file

    check_output_file(args.output, "-o")
    if not args.checkpoint.is_file():
        raise ConfigError(f"checkpoint {args.checkpoint} is not a file")
    from moose_ros.export import export_onnx  # torch: only once the paths are known to be usable
    input_size: tuple[int, int] | str | None
    if args.input_size == "native":
        input_size = None
    elif args.input_size == "checkpoint":
        input_size = "checkpoint"
    else:
        input_size = parse_size(args.input_size, what="--input-size")
    output_size = parse_size(args.output_size, what="--output-size") if args.output_size is not None else None
    from moose_ros.export.postprocess import BoundarySuppression

    road = [c.strip() for c in args.road_gate.split(",") if c.strip()] if args.road_gate else None
    meta = export_onnx(
        args.checkpoint,
        args.output,
        scores=tuple(args.score or ("max_logit",)),
        input_size=input_size,
        output_size=output_size,
        score_resolution=args.score_resolution,
        dynamic_batch=not args.static_batch,
        heads=args.heads,
        check_tensorrt=not args.no_tensorrt_check,
        boundary=BoundarySuppression() if args.boundary_suppression else None,
        road_classes=road,
    )
    print(
        f"wrote {args.output}: {meta.architecture}, {meta.num_classes} classes, K={meta.num_probes} probes, "
        f"scores {', '.join(meta.scores)} ({meta.score_resolution} resolution), "
        f"input {meta.input_size or 'native'}, output {meta.output_size or 'input size'}"
    )
    return 0
