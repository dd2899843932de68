"""``moose bag from-dataset | evaluate``: write a dataset into a rosbag2, replay a bag into the node.

Examples::

    moose bag from-dataset --dataset lostandfound --root data/laf --split test -o out/laf.bag --rate 10
    moose bag evaluate out/laf.bag --model models/moose_synthstreet.onnx --max-speed --out out/bag_eval
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run", "seconds_to_ns"]

HELP = "rosbag2 tools: dataset -> bag (from-dataset), bag replay through the node with metrics (evaluate)"

log = logging.getLogger(__name__)


def seconds_to_ns(text: str, option: str = "--start-time") -> int:
    """``"1704067200.123456789"`` -> integer nanoseconds, exactly (no float rounding), 0 <= seconds < 2^31.

    Raises:
        ConfigError: naming ``option``, the text and the allowed range (a ROS 2 stamp holds int32 seconds).
    """
    from decimal import Decimal, InvalidOperation

    from moose_ros.errors import ConfigError

    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(f"{option} {text!r} is not a number of seconds") from None
    if not value.is_finite() or value < 0 or value >= 2**31:
        raise ConfigError(f"{option} {text!r}: expected 0 <= seconds < 2147483648 (a ROS 2 stamp holds int32 "
                          "seconds, until 2038-01-19)")
    return int(value * 1_000_000_000)


def _add_from_dataset(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("from-dataset", help="write a dataset (image, camera_info, ground truth) into a rosbag2")
    p.add_argument("-o", "--out", type=Path, required=True, help="bag directory to create (must not exist)")
    p.add_argument("--root", type=Path, required=True, help="dataset root directory")
    p.add_argument(
        "--dataset",
        default="lostandfound",
        help="dataset layout under --root, as in `moose eval` (any moose_ros.data.open_dataset kind; default "
        "lostandfound)",
    )
    p.add_argument("--split", default=None, help="dataset split (reader default when omitted)")
    p.add_argument("--limit", type=int, default=None, help="write only the first N frames")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    p.add_argument(
        "--compressed",
        choices=("jpeg", "png"),
        default=None,
        help="write sensor_msgs/CompressedImage on <image-topic>/compressed (default: Image rgb8 on --image-topic)",
    )
    p.add_argument("--jpeg-quality", type=int, default=95, help="1-100 (default 95)")
    p.add_argument("--rate", type=float, default=10.0, help="frame rate of the stamps in Hz (default 10)")
    p.add_argument(
        "--start-time",
        default=None,
        help="stamp of the first frame in seconds since the epoch (default 2024-01-01T00:00:00Z)",
    )
    p.add_argument("--frame-id", default="camera", help="header.frame_id (default 'camera')")
    p.add_argument("--image-topic", default="/camera/image")
    p.add_argument("--camera-info-topic", default="/camera/camera_info")
    p.add_argument("--gt-topic", default="/camera/ood_gt", help="ground truth mono8 0/1/255 topic")
    p.add_argument("--no-gt", action="store_true", help="do not write the ground-truth topic")
    p.add_argument(
        "--camera-info",
        type=Path,
        default=None,
        help="camera_calibration YAML with the intrinsics (default: 60 deg pinhole, centred principal point)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="replay a bag into the node over DDS, record its outputs, report metrics, latency and drops",
    )
    p.add_argument("bag", type=Path, help="rosbag2 directory (from `moose bag from-dataset` or recorded)")
    p.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled model)")
    p.add_argument("--backend", default="auto", help="node backend (auto, onnxruntime, tensorrt, torch)")
    p.add_argument("--out", type=Path, default=Path("out/bag_eval"), help="report directory (default out/bag_eval)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--max-speed",
        action="store_true",
        help="send the next frame only after the node answered the previous one (no drops by design)",
    )
    mode.add_argument(
        "--rate-scale",
        type=float,
        default=1.0,
        help="replay at the recorded rate times this factor (default 1.0); frames the node skips are dropped",
    )
    p.add_argument("--image-topic", default=None, help="camera topic in the bag (default: found automatically)")
    p.add_argument("--gt-topic", default=None, help="ground-truth topic in the bag (default /camera/ood_gt)")
    p.add_argument("--limit", type=int, default=None, help="replay only the first N frames")
    p.add_argument("--threads", type=int, default=None, help="inference threads for the node's backend")
    p.add_argument(
        "--frame-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for one answer in --max-speed mode before counting the frame as dropped",
    )
    p.add_argument("--startup-timeout", type=float, default=60.0, help="seconds to wait for the node to come up")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID (default: a fresh one)")
    p.add_argument("--method", default=None, help="method name in the report (default: the model file stem)")
    p.add_argument("--score", default=None, help="exported score the node publishes (default: the model's first)")
    p.add_argument(
        "--mode",
        choices=("hist", "exact"),
        default="hist",
        help="metric accumulation as in `moose eval`: hist (bounded memory, default) or exact (every score kept)",
    )
    p.add_argument("--bins", type=int, default=1 << 17, help="histogram bins (even; default 131072)")
    p.add_argument("--gallery", type=int, default=4, help="frames in the report's overlay gallery (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``from-dataset`` and ``evaluate`` subcommands."""
    sub = parser.add_subparsers(dest="bag_command", metavar="BAG_COMMAND", required=True)
    _add_from_dataset(sub)
    _add_evaluate(sub)


def _run_from_dataset(args: argparse.Namespace) -> int:
    from moose_ros.bag.from_dataset import DEFAULT_START_NS, BagTopics, BagWriteOptions, write_bag
    from moose_ros.bag.messages import load_camera_yaml
    from moose_ros.bag.topics import check_topic_name
    from moose_ros.data import open_dataset
    from moose_ros.errors import ConfigError
    from moose_ros.outputs import check_new_dir

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    for option, topic in (("--image-topic", args.image_topic), ("--camera-info-topic", args.camera_info_topic),
                          ("--gt-topic", args.gt_topic)):
        check_topic_name(topic, option)
    check_new_dir(args.out, "-o")
    start_ns = DEFAULT_START_NS if args.start_time is None else seconds_to_ns(args.start_time)
    dataset = open_dataset(args.dataset, args.root, args.split)
    samples = dataset if args.limit is None else dataset[: args.limit]
    options = BagWriteOptions(
        storage=args.storage,
        image_format="raw" if args.compressed is None else args.compressed,
        jpeg_quality=args.jpeg_quality,
        rate_hz=args.rate,
        start_ns=start_ns,
        frame_id=args.frame_id,
        camera=None if args.camera_info is None else load_camera_yaml(args.camera_info),
        ground_truth=not args.no_gt,
        topics=BagTopics(image=args.image_topic, camera_info=args.camera_info_topic, ood_gt=args.gt_topic),
    )
    summary = write_bag(samples, args.out, options, progress=not args.no_progress)
    print(
        f"wrote {summary.frames} frames ({summary.frames_with_ground_truth} with ground truth) to {summary.path} "
        f"[{summary.storage}]: {summary.image_topic} ({summary.image_type}), {options.topics.camera_info}"
        + (f", {summary.ground_truth_topic}" if summary.ground_truth_topic else "")
        + f"; {options.rate_hz:g} Hz from {summary.start_ns / 1e9:.3f} s"
    )
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from moose_ros.bag.topics import check_topic_name
    from moose_ros.outputs import check_report_dir
    from moose_ros.resources import bundled_model_path

    check_report_dir(args.out, "--out")
    for option, topic in (("--image-topic", args.image_topic), ("--gt-topic", args.gt_topic)):
        if topic is not None:
            check_topic_name(topic, option)
    model = args.model if args.model is not None else bundled_model_path()
    from moose_ros.bag.evaluate import ReplayOptions, check_node_model, evaluate_bag, format_summary

    check_node_model(model)
    options = ReplayOptions(
        max_speed=args.max_speed,
        rate_scale=args.rate_scale,
        frame_timeout_s=args.frame_timeout,
        startup_timeout_s=args.startup_timeout,
        limit=args.limit,
        domain_id=args.domain_id,
        backend=args.backend,
        threads=args.threads,
        image_topic=args.image_topic,
        gt_topic=args.gt_topic,
        node_params={} if args.score is None else {"score": args.score},
        metrics_mode=args.mode,
        bins=args.bins,
        gallery=args.gallery,
        progress=not args.no_progress,
    )
    result, paths = evaluate_bag(args.bag, model, args.out, options, method=args.method)
    print(format_summary(result))
    print(f"report: {paths['markdown']} (JSON {paths['json']})")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen bag subcommand; returns the exit status."""
    if args.bag_command == "from-dataset":
        return _run_from_dataset(args)
    return _run_evaluate(args)
