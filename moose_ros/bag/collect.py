"""Matching the node's outputs to the frames sent: metrics, latency, drops and the node's own counters.

:class:`OutputCollector` is fed every message the replay receives (``~/anomaly``, ``~/segmentation``,
``/diagnostics``, as CDR bytes with their receipt time) and fills a :class:`BagEvalResult`. It needs neither
rclpy nor a running node, only the decoded payloads.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from moose_ros.bag.messages import IMAGE_TYPE, deserialize, header_stamp_ns, image_to_array, message_to_array
from moose_ros.bag.reader import BagFrame
from moose_ros.errors import ConfigError, DatasetError

__all__ = ["DIAGNOSTICS_TYPE", "LATENCY_PERCENTILES", "BagEvalResult", "GalleryFrame", "OutputCollector"]

LATENCY_PERCENTILES = (50, 90, 95, 99)
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"


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
        ground_truth_topic: the bag's ground-truth topic (None: the bag has none, a latency-only replay).
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
    ground_truth_topic: str | None = None
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


class OutputCollector:
    """Matches node outputs to sent frames by stamp; feeds metrics; tracks latency, drops and the gallery.

    Call :meth:`sent` for every published frame, :meth:`handle` for every received message, then
    :meth:`finish` once to fill ``result`` (latency summary, throughput, metrics).

    Args:
        result: the record to fill.
        with_gt: accumulate OoD metrics (frames without ``ood`` are still timed but not scored).
        image_type: message type of the frames' payloads (decoded only for gallery frames).
        metrics_mode, bins: :class:`~moose_ros.metrics.OodMetrics` ``mode`` and ``bins``.
    """

    def __init__(
        self, result: BagEvalResult, *, with_gt: bool, image_type: str, metrics_mode: str = "hist", bins: int = 1 << 17
    ) -> None:
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
        self.last_diagnostics_ns = 0
        self.metrics = (
            {p: OodMetrics(protocol=p, mode=metrics_mode, bins=bins) for p in ("pooled", "per_image")}
            if with_gt
            else None
        )

    def sent(self, frame: BagFrame, sent_ns: int, keep: bool) -> None:
        """``frame`` was published at ``sent_ns`` (``time.monotonic_ns``); ``keep`` it for the gallery."""
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
        """True once the frame with this stamp got its ``~/anomaly`` (or was written off as dropped)."""
        return stamp_ns not in self.pending

    def handle(self, key: str, payload: bytes, receipt_ns: int) -> None:
        """One received message: ``key`` ``anomaly`` | ``segmentation`` | ``diagnostics``, CDR bytes, receipt time."""
        if key == "diagnostics":
            self._diagnostics(payload)
            self.last_diagnostics_ns = receipt_ns
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

    def node_settled(self, since_ns: int) -> bool:
        """True when diagnostics received after ``since_ns`` show the node idle with every answer delivered:
        each frame it received was processed, overwritten or rejected, and it processed no more than we got.
        Frames still pending then were lost in transport and will not be answered."""
        stats = self.result.node_stats
        if not stats or self.last_diagnostics_ns <= since_ns:
            return False
        resolved = stats["processed"] + stats["dropped"] + stats["rejected"]
        return resolved >= stats["received"] and stats["processed"] <= self.result.frames_answered

    def node_counts_final(self) -> bool:
        """True once the node's diagnostics account for every answer received."""
        return int(self.result.node_stats.get("processed", -1)) >= self.result.frames_answered

    def _drop(self, entry: _Pending) -> None:
        self.result.frames_dropped += 1
        self.result.dropped_names.append(entry.frame.name)

    def finish(self) -> None:
        """Write off unanswered frames as dropped and fill latency, throughput and metrics into ``result``."""
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
    msg = deserialize(frame.raw, msgtype, where=f"frame '{frame.name}'")
    return message_to_array(msg, msgtype, where=f"frame '{frame.name}'")
