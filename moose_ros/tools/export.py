"""``moose export``: a checkpoint -> the fused ONNX graph every backend runs.

Examples::

    moose export models/moose_synthstreet.pt -o models/moose_synthstreet.onnx
    moose export ckpt.pt -o model.onnx --score max_logit --score entropy --input-size 512x1024 --score-resolution full
    moose export ckpt.pt -o model_int8.onnx --input-size checkpoint --int8 --calib out/synthstreet
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
    parser.add_argument(
        "--int8",
        action="store_true",
        help="quantise the network's convolutions to int8 (ONNX Runtime static QDQ, CPU); needs --calib",
    )
    parser.add_argument("--calib", type=Path, default=None, help="calibration images for --int8: a dataset root")
    parser.add_argument("--calib-dataset", default="cityscapes", help="layout of --calib (default cityscapes)")
    parser.add_argument("--calib-split", default="train", help="split of --calib (default train)")
    parser.add_argument("--calib-count", type=int, default=64, help="calibration images, evenly spaced (64)")
    parser.add_argument("--calib-method", choices=("percentile", "minmax"), default="percentile",
                        help="activation ranges for --int8: 99.999th percentile (default) or min-max")
    parser.add_argument("--static-batch", action="store_true", help="fix N = 1 (default: dynamic batch)")
    parser.add_argument("--no-tensorrt-check", action="store_true", help="skip the static TensorRT-compatibility check")


def run(args: argparse.Namespace) -> int:
    """Export and print a one-line summary."""
    from moose_ros.errors import ConfigError
    from moose_ros.outputs import check_output_file

    check_output_file(args.output, "-o")
    if not args.checkpoint.is_file():
        raise ConfigError(f"checkpoint {args.checkpoint} is not a file")
    calib = _calibration_images(args) if args.int8 else None
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
    fp32_path = args.output.with_name(f".{args.output.name}.fp32") if calib is not None else args.output
    meta = export_onnx(
        args.checkpoint,
        fp32_path,
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
    if calib is not None:
        from moose_ros.export.quantize import quantize_int8

        try:
            meta = quantize_int8(fp32_path, args.output, calib, calibration=args.calib_method)
        finally:
            fp32_path.unlink(missing_ok=True)
    print(
        f"wrote {args.output}: {'int8 network, ' * (calib is not None)}{meta.architecture}, "
        f"{meta.num_classes} classes, K={meta.num_probes} probes, "
        f"scores {', '.join(meta.scores)} ({meta.score_resolution} resolution), "
        f"input {meta.input_size or 'native'}, output {meta.output_size or 'input size'}"
    )
    return 0


def _calibration_images(args: argparse.Namespace) -> list:
    """``--calib-count`` uint8 [H, W, 3] images spread evenly over ``--calib`` (checked before any export)."""
    import numpy as np

    from moose_ros.data import open_dataset
    from moose_ros.errors import ConfigError

    if args.calib is None:
        raise ConfigError("--int8 needs --calib DIR: in-distribution images to calibrate the int8 ranges on")
    if args.calib_count < 1:
        raise ConfigError(f"--calib-count={args.calib_count}: expected an integer >= 1")
    dataset = open_dataset(args.calib_dataset, args.calib, args.calib_split)
    if len(dataset) == 0:
        raise ConfigError(f"--calib {args.calib}: split '{args.calib_split}' holds no images")
    picks = np.linspace(0, len(dataset) - 1, num=min(args.calib_count, len(dataset))).astype(int)
    return [np.asarray(dataset[int(i)].image) for i in picks]
