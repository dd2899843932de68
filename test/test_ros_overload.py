"""Overload: a 30 Hz camera and a model slower than that. The node must only process recent frames (latest frame
wins, no queue of stale frames), keep latency bounded and memory flat, and count the drops in /diagnostics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_ros_support import Harness, load_backend, raw_image_msg, scene_image, stamp, tiny_fused_onnx

from moose_ros.ros import launcher

pytestmark = pytest.mark.ros

RATE_HZ = 30.0
DURATION_S = 5.0
#: glibc malloc with a FIXED mmap threshold: every frame-sized buffer (> 128 KiB) is mapped on allocation and unmapped
#: when freed, so the node's resident memory follows its live data. With the default dynamic threshold, freed frame
#: buffers are kept in the heap and RSS grows in 20 MiB steps on some runs without anything being leaked or queued.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _rss_kib(pid: int) -> int:
    """Resident ANONYMOUS memory of ``pid`` in KiB (RssAnon): what a queue of frames would grow. Not VmRSS, which
    also counts the shared-memory DDS segments, whose pages the node touches progressively as their ring buffers
    advance (tens of MiB over the first hundred frames, not a leak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise RuntimeError(f"no RssAnon for pid {pid}")


def _overloading_size(model: Path, target_ms: float = 100.0) -> tuple[int, int]:
    """A frame size at which one inference takes about ``target_ms`` here (1 thread): 240x320 scaled up on a fast
    CPU, so that a 30 Hz camera overloads the node whatever the machine's speed."""
    backend = load_backend(model, threads=1)
    height, width = 240, 320
    for _ in range(4):
        image = scene_image(height, width)[None]
        backend.infer(image)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            backend.infer(image)
            times.append((time.perf_counter() - start) * 1e3)
        ms = float(np.median(times))
        if ms >= 0.9 * target_ms or height >= 1920:
            break
        scale = min(2.0, (target_ms / max(ms, 1e-3)) ** 0.5)
        height, width = int(height * scale) // 8 * 8, int(width * scale) // 8 * 8
    backend.close()
    return height, width


def test_overload_drops_stale_frames(tmp_path: Path, ros_domain: int, ros_env: dict[str, str]) -> None:
    model = tiny_fused_onnx(tmp_path / "slow.onnx", depth=6, width=32)  # ~100 ms per 240x320 frame on 1 thread
    height, width = _overloading_size(model)
    log_path = tmp_path / "node.log"
    proc = launcher.start_node({"model": str(model), "threads": 1, "diagnostics_period": 0.5,
                                "max_latency_ms": 60.0, "max_drop_ratio": 0.2},
                               env=dict(ros_env, **MALLOC_ENV), log_path=log_path)
    harness = Harness(ros_domain)
    try:
        harness.subscribe_outputs(suffixes=("anomaly", "segmentation"))
        launcher.wait_for_topic(harness.node, "/moose_node/anomaly", proc=proc, log_path=log_path,
                                executor=harness.executor)
        msg = raw_image_msg(scene_image(height, width), "rgb8", frame_id="cam", sec=0)
        harness.publish("image", msg)  # creates the publisher; this frame (stamp 0) may or may not be processed
        published: list[float] = []  # index -> monotonic publish time; stamp sec = 1000 + index
        rss: list[int] = []
        start = time.monotonic()
        while (now := time.monotonic()) - start < DURATION_S:
            msg.header.stamp = stamp(1000 + len(published))
            harness.publish("image", msg)
            published.append(now)
            rss.append(_rss_kib(proc.pid))  # one sample per published frame
            harness.spin_for(max(0.0, start + len(published) / RATE_HZ - time.monotonic()))
        harness.spin_for(1.5)
        received = sorted(
            (m.header.stamp.sec - 1000, t) for (topic, _), (m, t) in harness.outputs.items()
            if topic.endswith("/anomaly") and m.header.stamp.sec >= 1000
        )
        assert len(received) >= 10, launcher.log_tail(log_path)
        diag = harness.latest_diagnostics("moose_node")
        periods = [{kv.key: kv.value for kv in a.status[0].values} for a in harness.diagnostics]
        infer_ms = float(np.median([float(p["inference_ms"]) for p in periods if p["inference_ms"] != "n/a"]))
        warnings = [a.status[0].message for a in harness.diagnostics if a.status[0].level == b"\x01"]
        assert any("dropping" in w and "p95 latency" in w for w in warnings), warnings
        frame_ms = 1000.0 / RATE_HZ
        assert infer_ms > 1.5 * frame_ms, f"model too fast to overload the node: {infer_ms:.1f} ms"

        indices = [i for i, _ in received]
        assert indices == sorted(set(indices)), "outputs out of order or duplicated"
        staleness = []
        latency_ms = []
        for index, t_recv in received:
            latest = int(np.searchsorted(published, t_recv, side="right")) - 1  # newest frame sent before receipt
            staleness.append(latest - index)
            latency_ms.append((t_recv - published[index]) * 1e3)
        # A frame is at most one inference (+ transport slack) old when its output arrives; a queue would grow
        # by ~RATE_HZ * DURATION_S * (1 - processed/published) frames.
        bound_frames = int(np.ceil(2.5 * infer_ms / frame_ms)) + 3
        assert max(staleness) <= bound_frames, (staleness, infer_ms)
        assert float(np.percentile(latency_ms, 95)) <= 3.0 * infer_ms + 150.0, (latency_ms, infer_ms)
        assert max(latency_ms[len(latency_ms) // 2:]) <= 4.0 * infer_ms + 250.0, "latency grows over time"

        dropped, total = int(diag["dropped"]), int(diag["received"])
        expected_drop_ratio = 1.0 - frame_ms / infer_ms  # processing at 1/inference Hz, the rest is overwritten
        assert total >= 0.8 * len(published) and dropped >= 0.5 * expected_drop_ratio * total, diag
        resolved = int(diag["processed"]) + dropped + int(diag["rejected"]) + int(diag["skipped"])
        assert resolved == total, diag  # every received frame was processed or counted as dropped
        # A queue grows by every frame it keeps for as long as the overload lasts; allocator warm-up (first frames on
        # a busy machine) does not. One frame's working set comes and goes (~20 MiB between samples), so compare the
        # LOWEST resident size of the second quarter with that of the last quarter: a queue raises the floor by the
        # frames it keeps; the bound is half the bytes published between the two quarters.
        quarter = len(rss) // 4
        early, late = min(rss[quarter:2 * quarter]), min(rss[3 * quarter:])
        bound_kib = max(8 * 1024, 0.5 * 2 * quarter * height * width * 3 / 1024)
        assert late - early < bound_kib, f"anonymous RSS floor grew from {early} KiB to {late} KiB over the run " \
            f"(bound {bound_kib:.0f} KiB; samples {rss[::10]})"
    finally:
        harness.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)
