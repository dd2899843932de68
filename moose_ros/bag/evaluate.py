"""Replay a bag into the running node over DDS and evaluate what comes back.

:func:`replay_bag` starts ``moose_node`` (loopback DDS profile, its own domain) through
:mod:`moose_ros.ros.launcher`, publishes the bag's camera payloads as they are, records ``~/anomaly`` and
``~/segmentation``, matches them to the ground truth by ``header.stamp`` and accumulates the same OoD metrics as
``moose eval`` (pooled and per-image AUPR / FPR95 / AUROC, :class:`moose_ros.metrics.OodMetrics`) plus latency
(publish -> receipt, milliseconds), dropped frames (sent, never answered) and throughput.

Two pacing modes:

- ``max_speed``: the next frame leaves only when the node answered the previous one (or ``frame_timeout_s``
  passed: that frame counts as dropped). Nothing is dropped by design, so the metrics equal an offline run.
- rate: frames leave at the bag's stamp spacing divided by ``rate_scale``; the node's latest-frame-wins policy
  skips frames it cannot keep up with, and those are reported as dropped (an answer to a later frame proves an
  earlier unanswered one will never come).

:func:`evaluate_bag` adds the report (Markdown + JSON + PNG) in an output directory.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moose_ros.bag.collect import BagEvalResult, GalleryFrame, OutputCollector
from moose_ros.bag.messages import COMPRESSED_TYPE
from moose_ros.bag.reader import inspect_bag, iter_frames
from moose_ros.bag.topics import topic_name_problem
from moose_ros.errors import ConfigError, DatasetError, MooseError
from moose_ros.outputs import check_report_dir

__all__ = [
    "BagEvalResult",
    "GalleryFrame",
    "ReplayOptions",
    "check_node_model",
    "evaluate_bag",
    "format_summary",
    "replay_bag",
]

log = logging.getLogger(__name__)

#: node output key -> topic suffix under the node's private namespace
OUTPUT_SUFFIXES = {"anomaly": "anomaly", "segmentation": "segmentation"}


@dataclass(frozen=True)
class ReplayOptions:
    """How :func:`replay_bag` paces the replay and runs the node.

    Attributes:
        max_speed: wait for each answer before sending the next frame (else replay at the recorded rate).
        rate_scale: recorded rate multiplier in rate mode (2.0 = twice as fast), > 0.
        frame_timeout_s: max-speed: wait this long for one answer; rate mode: wait this long after the last
            frame for the outstanding answers.
        startup_timeout_s: wait this long for the node to load the model and match topics.
        settle_s: extra discovery time once matched.
        limit: replay only the first N frames (None = all).
        domain_id: ROS_DOMAIN_ID for the node and the replay participant (None = a fresh one).
        backend, threads: the node's ``backend`` and ``threads`` parameters (threads None = backend default).
        image_topic, gt_topic: bag topics (None = found automatically).
        node_params: more node parameters (override the ones derived here).
        metrics_mode: ``"hist"`` (bounded memory, the ``moose eval`` default) or ``"exact"`` (keeps every
            score), the :class:`~moose_ros.metrics.OodMetrics` ``mode``; ``bins``: its histogram bins.
        gallery: number of frames (evenly spaced) kept for the report's overlay gallery.
        progress: tqdm progress bar on stderr.
    """

    max_speed: bool = False
    rate_scale: float = 1.0
    frame_timeout_s: float = 30.0
    startup_timeout_s: float = 60.0
    settle_s: float = 1.0
    limit: int | None = None
    domain_id: int | None = None
    backend: str = "auto"
    threads: int | None = None
    image_topic: str | None = None
    gt_topic: str | None = None
    node_params: dict[str, Any] = field(default_factory=dict)
    metrics_mode: str = "hist"
    bins: int = 1 << 17
    gallery: int = 4
    progress: bool = True

    def __post_init__(self) -> None:
        if not (self.rate_scale > 0 and math.isfinite(self.rate_scale)):
            raise ConfigError(f"rate_scale {self.rate_scale} must be a positive finite number")
        if self.frame_timeout_s <= 0 or self.startup_timeout_s <= 0:
            raise ConfigError("frame_timeout_s and startup_timeout_s must be > 0 seconds")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be >= 1 frame, got {self.limit}")
        if self.gallery < 0:
            raise ConfigError(f"gallery must be >= 0 frames, got {self.gallery}")
        if self.threads is not None and self.threads < 0:
            raise ConfigError(f"threads must be >= 0, got {self.threads}")


def _node_params(model: Path, options: ReplayOptions, compressed: bool) -> dict[str, Any]:
    params: dict[str, Any] = {
        "model": str(model),
        "backend": options.backend,
        "threads": 0 if options.threads is None else int(options.threads),
        "input_transport": "compressed" if compressed else "raw",
        # max-speed sends one frame at a time and waits: reliable input so a lost sample cannot stall it
        "input_reliability": "reliable" if options.max_speed else "best_effort",
        "publish_anomaly": True,
        "publish_segmentation": True,
        "publish_segmentation_color": False,
        "publish_overlay": False,
        "publish_mask": False,
    }
    params.update(options.node_params)
    return params


def replay_bag(
    bag: str | Path,
    model: str | Path,
    options: ReplayOptions | None = None,
    *,
    method: str | None = None,
    log_dir: str | Path | None = None,
) -> BagEvalResult:
    """Start the node on ``model``, replay ``bag`` into it and measure (see the module docstring).

    Args:
        bag: rosbag2 directory with a camera topic and optionally ``/camera/ood_gt``.
        model: fused-graph ONNX file for the node.
        options: pacing, node and metric options.
        method: method name for reports (default: the model file stem).
        log_dir: where the node log and ROS logs go (default: a temporary directory).

    Raises:
        MooseError: the node did not come up, died, or the bag is unusable (with the node log's tail).
    """
    import tempfile

    from moose_ros.backends.onnx_meta import read_meta
    from moose_ros.dds import allocate_domain_id, loopback_env
    from moose_ros.eval.core import gallery_indices
    from moose_ros.ros.launcher import log_tail, start_node, stop
    from moose_ros.ros.replay import ReplayClient

    options = options or ReplayOptions()
    bag, model = Path(bag), Path(model)
    check_node_model(model)
    info = inspect_bag(bag, image_topic=options.image_topic, gt_topic=options.gt_topic)
    if info.frames == 0:
        raise DatasetError(f"bag {bag} has no messages on {info.image_topic}")
    problem = topic_name_problem(info.image_topic)
    if problem is not None:
        raise DatasetError(f"bag {bag}: camera topic {info.image_topic!r} is not a valid ROS 2 topic name ({problem}); "
                           "it cannot be replayed over DDS")
    total = info.frames if options.limit is None else min(info.frames, options.limit)
    compressed = info.image_type == COMPRESSED_TYPE
    mode = "max_speed" if options.max_speed else f"rate x{options.rate_scale:g}"
    score = options.node_params.get("score") or read_meta(model).scores[0]
    result = BagEvalResult(str(bag), str(model), method or model.stem, str(score), mode,
                           ground_truth_topic=info.ground_truth_topic)
    keep = set(gallery_indices(total, options.gallery))
    collector = OutputCollector(
        result, with_gt=info.ground_truth_topic is not None, image_type=info.image_type,
        metrics_mode=options.metrics_mode, bins=options.bins,
    )

    tmp = None
    if log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="moose_bag_eval_")
        log_dir = tmp.name
    log_dir = Path(log_dir)
    log_path = log_dir / "node.log"
    domain = options.domain_id if options.domain_id is not None else allocate_domain_id()
    env = loopback_env(domain, log_dir=log_dir / "ros_logs")
    in_topic = "image/compressed" if compressed else "image"
    proc = start_node(
        _node_params(model, options, compressed), env=env, log_path=log_path,
        extra_args=("-r", f"{in_topic}:={info.image_topic}"),
    )
    outputs = {key: f"/moose_node/{suffix}" for key, suffix in OUTPUT_SUFFIXES.items()}
    try:
        with ReplayClient(
            domain_id=domain, input_topic=info.image_topic, input_type=info.image_type, outputs=outputs,
            diagnostics_topic="/diagnostics",
        ) as client:
            try:
                client.wait_connected(
                    options.startup_timeout_s, settle_s=options.settle_s, alive=lambda: proc.poll() is None
                )
            except MooseError as err:
                raise MooseError(f"{err}\n--- node log ({log_path}) ---\n{log_tail(log_path)}") from err
            _run_replay(client, collector, bag, options, total, keep, info, proc)
    finally:
        stop(proc)
        if tmp is not None:
            tmp.cleanup()
    collector.finish()
    return result


def _run_replay(
    client: Any, collector: OutputCollector, bag: Path, options: ReplayOptions, total: int, keep: set[int],
    info: Any, proc: Any,
) -> None:
    """Send the frames (paced by ``options``) and feed every answer to ``collector``."""
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=f"replay {bag.name}", unit="frame")

    def drain(timeout_s: float) -> None:
        for item in client.take(timeout_s):
            collector.handle(item.key, item.payload, item.receipt_ns)
        if bar is not None:
            r = collector.result
            done = r.frames_answered + r.frames_dropped
            if done > bar.n:
                bar.set_postfix(dropped=r.frames_dropped, refresh=False)
                bar.update(done - bar.n)

    frames = iter_frames(bag, image_topic=info.image_topic, gt_topic=info.ground_truth_topic, decode_images=False)
    t0_wall: int | None = None
    t0_stamp = 0
    try:
        for frame in frames:
            if frame.index >= total:
                break
            if proc.poll() is not None:
                raise MooseError(f"moose_node exited with status {proc.returncode} during the replay")
            if not options.max_speed:
                if t0_wall is None:
                    t0_wall, t0_stamp = time.monotonic_ns(), frame.stamp_ns
                due = t0_wall + (frame.stamp_ns - t0_stamp) / options.rate_scale
                while (wait := (due - time.monotonic_ns()) / 1e9) > 0:
                    drain(min(wait, 0.05))
            sent_ns = client.publish(frame.raw)
            collector.sent(frame, sent_ns, frame.index in keep)
            if options.max_speed:
                deadline = time.monotonic() + options.frame_timeout_s
                while not collector.answered(frame.stamp_ns) and time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise MooseError(f"moose_node exited with status {proc.returncode} during the replay")
                    drain(0.05)
            else:
                drain(0.0)
        # wait for the outstanding answers; stop early once the node's diagnostics (taken at least 0.5 s after the
        # last publish) show it idle: what is still pending then was lost in transport
        last_sent_ns = time.monotonic_ns()
        deadline = time.monotonic() + options.frame_timeout_s
        while collector.pending and time.monotonic() < deadline and proc.poll() is None:
            if collector.node_settled(last_sent_ns + 500_000_000):
                break
            drain(0.05)
        # the segmentation of the last gallery frame follows its anomaly output closely; the node's diagnostics
        # (1 Hz by default) follow within a period
        end = time.monotonic() + 0.5
        while collector.gallery_wait and time.monotonic() < end:
            drain(0.05)
        end = time.monotonic() + 2.5
        while not collector.node_counts_final() and time.monotonic() < end and proc.poll() is None:
            drain(0.05)
    finally:
        if bar is not None:
            bar.close()


def format_summary(result: BagEvalResult) -> str:
    """A few lines for the terminal: counts, latency, metrics."""
    lat = result.latency_ms
    lines = [
        f"bag {result.bag} -> {result.method} / {result.score} [{result.mode}]",
        f"  frames: sent {result.frames_sent}, answered {result.frames_answered}, dropped {result.frames_dropped}"
        f"; {result.fps:.2f} fps over {result.wall_s:.1f} s",
        f"  latency publish->receipt ms: p50 {lat.get('p50', float('nan')):.1f}, p95 {lat.get('p95', float('nan')):.1f}"
        f", p99 {lat.get('p99', float('nan')):.1f}, max {lat.get('max', float('nan')):.1f}",
    ]
    n = result.node_stats
    if n:
        lines.append(
            f"  node ({n.get('backend', '?')}): received {n['received']}, processed {n['processed']}, overwritten "
            f"{n['dropped']}, rejected {n['rejected']}; inference {n.get('inference_ms', float('nan')):.1f} ms mean"
        )
    if result.pooled is None and result.ground_truth_topic is None:
        lines.append("  no ground truth in the bag: latency report only")
    elif result.pooled is None:
        lines.append(f"  no metrics: the node answered no frame with ground truth on {result.ground_truth_topic}")
    else:
        for name, m in (("pooled", result.pooled), ("per-image", result.per_image or {})):
            lines.append(
                f"  {name:9s} AUPR {100 * m['aupr']:.2f}  FPR95 {100 * m['fpr95']:.2f}  AUROC {100 * m['auroc']:.2f}"
                f"  ({m['num_images_used']} images)"
            )
    return "\n".join(lines)


def evaluate_bag(
    bag: str | Path,
    model: str | Path,
    out_dir: str | Path,
    options: ReplayOptions | None = None,
    *,
    method: str | None = None,
) -> tuple[BagEvalResult, dict[str, Path]]:
    """:func:`replay_bag`, then the report in ``out_dir``; returns the result and the report's paths
    (``markdown``, ``json``, ``curves``, ``gallery``; see :func:`moose_ros.bag.report.write_bag_report`)."""
    import tempfile

    from moose_ros.bag.report import write_bag_report

    out_dir = check_report_dir(out_dir, "--out")
    with tempfile.TemporaryDirectory(prefix="moose_bag_eval_") as tmp:
        logs = Path(tmp) / "logs"
        result = replay_bag(bag, model, options, method=method, log_dir=logs)
        if result.frames_sent and not result.frames_answered:
            raise MooseError(f"moose_node answered none of the {result.frames_sent} frames of {bag} (model {model}); "
                             "no report written")
        return result, write_bag_report(out_dir, [result], include={"logs": logs})


def check_node_model(model: Path) -> None:
    """Raise before the node starts unless ``model`` exists and is a fused graph the node runs (the node's own
    start-up check, :func:`moose_ros.ros.model_check.check_model_file`: uint8 [N, H, W, 3] image input, labels
    and anomaly outputs, ``moose export`` metadata); otherwise the replay would run and every frame be rejected."""
    from moose_ros.ros.model_check import check_model_file

    if not model.is_file():
        raise ConfigError(f"--model {model} does not exist")
    check_model_file(model)
