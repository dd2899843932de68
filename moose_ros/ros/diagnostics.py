"""Per-camera counters and the ``/diagnostics`` message (diagnostic_updater is not available on PyPI).

:class:`CameraStats` is thread-safe: subscription callbacks count received/dropped frames, the worker counts
processed and rejected frames with their latency and inference time. :func:`build_status` turns one period's
:class:`StatsSnapshot` into a ``diagnostic_msgs/DiagnosticStatus`` whose level is WARN when the drop ratio or the
p95 latency exceeds its bound.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CameraStats", "StatsSnapshot", "build_status"]


@dataclass(frozen=True)
class StatsSnapshot:
    """One diagnostics period of one camera. Rates in Hz, times in milliseconds; totals since start."""

    period_s: float
    input_hz: float
    processed_hz: float
    received: int
    processed: int
    dropped: int
    rejected: int
    skipped: int
    period_received: int
    period_dropped: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    infer_ms: float | None
    last_error: str
    idle_s: float = 0.0  #: seconds since the last received message (since start when none came yet)


class CameraStats:
    """Counters of one camera input, read and reset once per diagnostics period by :meth:`snapshot`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.rejected = self.skipped = 0
        self.last_error = ""
        self._period_start = time.monotonic()
        self._last_received = self._period_start
        self._period_counts = (0, 0, 0)  # received, processed, dropped at period start
        self._latency_ms: list[float] = []
        self._infer_ms: list[float] = []

    def on_received(self, replaced_unprocessed: bool) -> None:
        """A message arrived; ``replaced_unprocessed``: it overwrote one the worker never took (a drop)."""
        with self._lock:
            self.received += 1
            self._last_received = time.monotonic()
            if replaced_unprocessed:
                self.dropped += 1

    def on_rejected(self, reason: str) -> None:
        """A message could not be decoded (``reason``: the error text)."""
        with self._lock:
            self.rejected += 1
            self.last_error = reason

    def on_skipped(self) -> None:
        """A frame was taken but not processed because no output had a subscriber."""
        with self._lock:
            self.skipped += 1

    def on_processed(self, latency_ms: float, infer_ms: float) -> None:
        """A frame was published ``latency_ms`` after its header stamp; inference took ``infer_ms``."""
        with self._lock:
            self.processed += 1
            self._latency_ms.append(latency_ms)
            self._infer_ms.append(infer_ms)

    def snapshot(self) -> StatsSnapshot:
        """Statistics since the previous call (rates, percentiles) plus totals; starts a new period."""
        now = time.monotonic()
        with self._lock:
            period = max(1e-6, now - self._period_start)
            rec0, proc0, drop0 = self._period_counts
            latency, infer = self._latency_ms, self._infer_ms
            self._latency_ms, self._infer_ms = [], []
            self._period_start = now
            self._period_counts = (self.received, self.processed, self.dropped)
            received, processed, dropped, rejected = self.received, self.processed, self.dropped, self.rejected
            skipped = self.skipped
            last_error = self.last_error
            idle_s = now - self._last_received
        p50 = p95 = mean_infer = None
        if latency:
            p50, p95 = (float(v) for v in np.percentile(np.asarray(latency), (50, 95)))
            mean_infer = float(np.mean(infer))
        return StatsSnapshot(
            period_s=period,
            input_hz=(received - rec0) / period,
            processed_hz=(processed - proc0) / period,
            received=received,
            processed=processed,
            dropped=dropped,
            rejected=rejected,
            skipped=skipped,
            period_received=received - rec0,
            period_dropped=dropped - drop0,
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            infer_ms=mean_infer,
            last_error=last_error,
            idle_s=idle_s,
        )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def build_status(
    name: str,
    hardware_id: str,
    snap: StatsSnapshot,
    *,
    backend: str,
    max_drop_ratio: float,
    max_latency_ms: float,
    input_timeout_s: float = float("inf"),
) -> Any:
    """A ``diagnostic_msgs/DiagnosticStatus`` for one camera: OK, WARN naming the exceeded bounds, or STALE when
    the camera received nothing for more than ``input_timeout_s`` seconds (its input stopped, or never started).

    Keys: ``input_rate_hz``, ``processed_rate_hz``; totals since start ``received`` = ``processed`` + ``dropped``
    (overwritten by a newer frame before processing) + ``rejected`` (malformed, or inference failed) + ``skipped``
    (no output subscribed) + at most one frame in flight; over the period ``latency_p50_ms``, ``latency_p95_ms``
    (header stamp -> last output published), ``inference_ms`` (mean); ``backend``, ``last_rejection``.
    """
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    problems = []
    if snap.period_received > 0 and snap.period_dropped / snap.period_received > max_drop_ratio:
        problems.append(f"dropping {snap.period_dropped}/{snap.period_received} frames (> {max_drop_ratio:.0%})")
    if snap.latency_p95_ms is not None and snap.latency_p95_ms > max_latency_ms:
        problems.append(f"p95 latency {snap.latency_p95_ms:.0f} ms > {max_latency_ms:.0f} ms")
    status = DiagnosticStatus()
    status.name = name
    status.hardware_id = hardware_id
    status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
    status.message = "; ".join(problems) if problems else "ok"
    if snap.idle_s > input_timeout_s:
        status.level = DiagnosticStatus.STALE
        status.message = (f"no input for {snap.idle_s:.1f} s" if snap.received else
                          f"no input yet ({snap.idle_s:.1f} s since start)")
    pairs = {
        "input_rate_hz": _fmt(snap.input_hz),
        "processed_rate_hz": _fmt(snap.processed_hz),
        "received": str(snap.received),
        "processed": str(snap.processed),
        "dropped": str(snap.dropped),
        "rejected": str(snap.rejected),
        "skipped": str(snap.skipped),
        "latency_p50_ms": _fmt(snap.latency_p50_ms),
        "latency_p95_ms": _fmt(snap.latency_p95_ms),
        "inference_ms": _fmt(snap.infer_ms),
        "backend": backend,
        "last_rejection": snap.last_error,
        "idle_s": _fmt(snap.idle_s, 1),
    }
    status.values = [KeyValue(key=k, value=v) for k, v in pairs.items()]
    return status
