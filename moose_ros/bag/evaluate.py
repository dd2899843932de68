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

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.bag.messages import COMPRESSED_TYPE, IMAGE_TYPE, deserialize, header_stamp_ns, image_to_array
from moose_ros.bag.reader import BagFrame, inspect_bag, iter_frames
from moose_ros.errors import ConfigError, DatasetError, MooseError

__all__ = ["BagEvalResult", "GalleryFrame", "ReplayOptions", "evaluate_bag", "format_summary", "replay_bag"]

log = logging.getLogger(__name__)

#: node output key -> topic suffix under the node's private namespace
OUTPUT_SUFFIXES = {"anomaly": "anomaly", "segmentation": "segmentation"}
LATENCY_PERCENTILES = (50, 90, 95, 99)
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


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


@dataclass
class GalleryFrame:
    """A frame kept for the report: uint8 [H,W,3] image, uint8 [H,W] ood (or None), float32 [H,W] score,
    uint8 [H,W] labels (or None when that output never came)."""

    name: str
    stamp_ns: int
    image: np.ndarray
    ood: np.ndarray | None
    score: np.ndarray
    labels: np.ndarray | None = None


@dataclass
class BagEvalResult:
    """What a replay measured.

    Attributes:
        bag, model: inputs; method: the method's name in reports (e.g. "MOoSe"); score: the anomaly score the
            node published on ``~/anomaly``.
        mode: ``"max_speed"`` or ``"rate x<scale>"``.
        frames_sent, frames_answered, frames_dropped: counts; dropped = sent and never answered.
        frames_with_ground_truth: answered frames that had ground truth (the metrics' images).
        dropped_names: names of the dropped frames.
        unmatched_outputs: outputs whose stamp matched no frame sent in this replay.
        latency_ms: ``mean``, ``max`` and ``p50``/``p90``/``p95``/``p99`` of publish -> receipt of ``~/anomaly``.
        wall_s: seconds from the first publish to the last answer; ``fps`` = answered / wall_s.
        pooled, per_image: :meth:`OodMetrics.compute` dicts, or None when the bag has no ground truth.
        node_stats: the node's own counters from ``/diagnostics`` (totals since start: ``received``,
            ``processed``, ``dropped`` (overwritten before processing), ``rejected``; ``inference_ms`` mean over
            processed frames; ``backend``), empty when no diagnostics arrived. ``sent - received`` frames were
            lost in transport.
        curves: pooled PR/ROC arrays for plots (not serialised to JSON).
        gallery: frames for the overlay gallery (not serialised to JSON).
    """

    bag: str
    model: str
    method: str
    score: str
    mode: str
    frames_sent: int = 0
    frames_answered: int = 0
    frames_dropped: int = 0
    frames_with_ground_truth: int = 0
    dropped_names: list[str] = field(default_factory=list)
    unmatched_outputs: int = 0
    latency_ms: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    fps: float = 0.0
    pooled: dict[str, Any] | None = None
    per_image: dict[str, Any] | None = None
    node_stats: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, np.ndarray] | None = None
    gallery: list[GalleryFrame] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays)."""
        out = asdict(self)
        out.pop("curves")
        out.pop("gallery")
        return json.loads(json.dumps(out, default=float))


@dataclass
class _Pending:
    frame: BagFrame
    sent_ns: int
    keep: bool  # gallery frame


def _latency_summary(latencies_ms: list[float]) -> dict[str, float]:
    if not latencies_ms:
        return {"mean": float("nan"), "max": float("nan"), **{f"p{p}": float("nan") for p in LATENCY_PERCENTILES}}
    arr = np.asarray(latencies_ms, dtype=np.float64)
    out = {"mean": float(arr.mean()), "max": float(arr.max())}
    out.update({f"p{p}": float(np.percentile(arr, p)) for p in LATENCY_PERCENTILES})
    return out


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


class _Collector:
    """Matches node outputs to sent frames by stamp; feeds metrics; tracks latency, drops and the gallery."""

    def __init__(self, result: BagEvalResult, options: ReplayOptions, with_gt: bool, image_type: str) -> None:
        from moose_ros.metrics import OodMetrics

        self.result = result
        self.image_type = image_type
        self.pending: dict[int, _Pending] = {}
        self.gallery_wait: dict[int, GalleryFrame] = {}
        self.latencies: list[float] = []
        self.first_sent_ns: int | None = None
        self._infer_weighted = 0.0  # sum of inference_ms x frames processed in that diagnostics period
        self._infer_frames = 0
        self.last_answer_ns: int | None = None
        self.metrics = (
            {p: OodMetrics(protocol=p, mode=options.metrics_mode, bins=options.bins) for p in ("pooled", "per_image")}
            if with_gt
            else None
        )

    def sent(self, frame: BagFrame, sent_ns: int, keep: bool) -> None:
        if frame.stamp_ns in self.pending:
            raise DatasetError(
                f"frames '{self.pending[frame.stamp_ns].frame.name}' and '{frame.name}' share the stamp "
                f"{frame.stamp_ns} ns; outputs are matched by stamp, so stamps must be unique"
            )
        self.pending[frame.stamp_ns] = _Pending(frame, sent_ns, keep)
        self.result.frames_sent += 1
        if self.first_sent_ns is None:
            self.first_sent_ns = sent_ns

    def answered(self, stamp_ns: int) -> bool:
        return stamp_ns not in self.pending

    def handle(self, key: str, payload: bytes, receipt_ns: int) -> None:
        if key == "diagnostics":
            self._diagnostics(payload)
            return
        msg = deserialize(payload, IMAGE_TYPE, where=f"node output '{key}'")
        stamp = header_stamp_ns(msg)
        if key == "segmentation":
            if stamp in self.gallery_wait:
                self.gallery_wait.pop(stamp).labels = image_to_array(msg, where="node output 'segmentation'")
            return
        entry = self.pending.pop(stamp, None)
        if entry is None:
            self.result.unmatched_outputs += 1
            return
        # latest frame wins in the node: an answer to this frame means every earlier unanswered one was skipped
        for old in [s for s, p in self.pending.items() if p.frame.index < entry.frame.index]:
            self._drop(self.pending.pop(old))
        score = image_to_array(msg, where="node output 'anomaly'")
        self.latencies.append((receipt_ns - entry.sent_ns) / 1e6)
        self.last_answer_ns = receipt_ns
        self.result.frames_answered += 1
        frame = entry.frame
        if self.metrics is not None and frame.ood is not None:
            if score.shape != frame.ood.shape:
                raise ConfigError(
                    f"node output for frame '{frame.name}' is {score.shape[1]}x{score.shape[0]} but its ground truth "
                    f"is {frame.ood.shape[1]}x{frame.ood.shape[0]}; leave the node's output_size at [0, 0]"
                )
            for metric in self.metrics.values():
                metric.update(score, frame.ood)
            self.result.frames_with_ground_truth += 1
        if entry.keep:
            image = frame.image if frame.image is not None else _decode_frame(frame, self.image_type)
            kept = GalleryFrame(frame.name, stamp, image, frame.ood, score)
            self.result.gallery.append(kept)
            self.gallery_wait[stamp] = kept

    def _diagnostics(self, payload: bytes) -> None:
        """Keep the node's totals from its ``/diagnostics`` status (first camera)."""
        msg = deserialize(payload, DIAGNOSTICS_TYPE, where="/diagnostics")
        if not len(msg.status):
            return
        values = {kv.key: kv.value for kv in msg.status[0].values}
        stats = self.result.node_stats
        try:
            totals = {k: int(values[k]) for k in ("received", "processed", "dropped", "rejected")}
        except (KeyError, ValueError):
            return
        new_frames = totals["processed"] - int(stats.get("processed", 0))
        try:
            infer = float(values.get("inference_ms", "n/a"))
        except ValueError:
            infer = math.nan
        if new_frames > 0 and math.isfinite(infer):
            self._infer_weighted += infer * new_frames
            self._infer_frames += new_frames
        stats.update(totals)
        stats["backend"] = values.get("backend", "")
        stats["inference_ms"] = self._infer_weighted / self._infer_frames if self._infer_frames else math.nan

    def node_counts_final(self) -> bool:
        """True once the node's diagnostics account for every answer received."""
        return int(self.result.node_stats.get("processed", -1)) >= self.result.frames_answered

    def _drop(self, entry: _Pending) -> None:
        self.result.frames_dropped += 1
        self.result.dropped_names.append(entry.frame.name)

    def finish(self) -> None:
        for entry in sorted(self.pending.values(), key=lambda p: p.frame.index):
            self._drop(entry)
        self.pending.clear()
        r = self.result
        r.latency_ms = _latency_summary(self.latencies)
        if self.first_sent_ns is not None and self.last_answer_ns is not None:
            r.wall_s = (self.last_answer_ns - self.first_sent_ns) / 1e9
            r.fps = r.frames_answered / r.wall_s if r.wall_s > 0 else float("nan")
        if self.metrics is not None and r.frames_with_ground_truth:
            r.pooled = self.metrics["pooled"].compute()
            r.per_image = self.metrics["per_image"].compute()
            r.curves = self.metrics["pooled"].curves()


def _decode_frame(frame: BagFrame, msgtype: str) -> np.ndarray:
    """uint8 [H, W, 3] RGB of a frame read without decoding."""
    from moose_ros.bag.messages import message_to_array

    msg = deserialize(frame.raw, msgtype, where=f"frame '{frame.name}'")
    return message_to_array(msg, msgtype, where=f"frame '{frame.name}'")


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
    if not model.is_file():
        raise ConfigError(f"model {model} does not exist")
    info = inspect_bag(bag, image_topic=options.image_topic, gt_topic=options.gt_topic)
    if info.frames == 0:
        raise DatasetError(f"bag {bag} has no messages on {info.image_topic}")
    total = info.frames if options.limit is None else min(info.frames, options.limit)
    compressed = info.image_type == COMPRESSED_TYPE
    mode = "max_speed" if options.max_speed else f"rate x{options.rate_scale:g}"
    score = options.node_params.get("score") or read_meta(model).scores[0]
    result = BagEvalResult(str(bag), str(model), method or model.stem, str(score), mode)
    keep = set(gallery_indices(total, options.gallery))
    collector = _Collector(result, options, info.ground_truth_topic is not None, info.image_type)

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
    client: Any, collector: _Collector, bag: Path, options: ReplayOptions, total: int, keep: set[int],
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
        deadline = time.monotonic() + options.frame_timeout_s
        while collector.pending and time.monotonic() < deadline and proc.poll() is None:
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
    if result.pooled is None:
        lines.append("  no ground truth in the bag: latency report only")
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
    from moose_ros.bag.report import write_bag_report

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = replay_bag(bag, model, options, method=method, log_dir=out_dir / "logs")
    return result, write_bag_report(out_dir, [result])
