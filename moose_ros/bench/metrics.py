"""Throughput of the streaming (histogram) OoD metrics on one core.

``moose bench metrics [--size 1024x2048 --images 20 --bins 131072]`` prints Mpx/s of ``OodMetrics.update`` in
``hist`` mode (the budget is >= 50 Mpx/s) and, for scale, of ``exact`` pooled mode (:func:`throughput_lines`).
"""

from __future__ import annotations

import time

import numpy as np

from moose_ros.metrics.histogram import DEFAULT_BINS
from moose_ros.metrics.ood import OodMetrics

__all__ = ["measure_throughput", "throughput_lines"]


def _frames(height: int, width: int, count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        ood = (rng.random((height, width)) < 0.02).astype(np.uint8)
        ood[: height // 8] = 255  # a void band, like the ego-vehicle / sky of real datasets
        score = rng.standard_normal((height, width)).astype(np.float32) + 2.0 * ood
        out.append((score, ood))
    return out


def measure_throughput(
    height: int = 1024,
    width: int = 2048,
    images: int = 10,
    mode: str = "hist",
    protocol: str = "pooled",
    bins: int = DEFAULT_BINS,
    distinct: int = 2,
    seed: int = 0,
) -> dict[str, float]:
    """Feed ``images`` frames (float32 [H, W] scores, uint8 ood) and time ``update`` + ``compute``.

    Only ``distinct`` different frames are generated and cycled, to keep the set-up cheap. Returns
    ``{"mpx_per_s" (update only), "update_s", "compute_s", "megapixels", "aupr"}``; run it with one thread
    (numpy's element-wise kernels and bincount are single-threaded anyway).
    """
    frames = _frames(height, width, max(1, min(distinct, images)), seed)
    metrics = OodMetrics(protocol=protocol, mode=mode, bins=bins)
    metrics.update(*frames[0])  # warm-up; learns the histogram range
    metrics.reset()
    t0 = time.perf_counter()
    for i in range(images):
        metrics.update(*frames[i % len(frames)])
    t1 = time.perf_counter()
    result = metrics.compute()
    t2 = time.perf_counter()
    mpx = height * width * images / 1e6
    return {
        "mpx_per_s": mpx / (t1 - t0),
        "update_s": t1 - t0,
        "compute_s": t2 - t1,
        "megapixels": mpx,
        "aupr": float(result["aupr"]),
    }


def throughput_lines(height: int, width: int, images: int, bins: int = DEFAULT_BINS) -> list[str]:
    """One line per mode: hist (pooled, per-image) and exact (pooled) update throughput at ``height`` x ``width``."""
    lines = []
    for mode, protocol, n in (("hist", "pooled", images), ("hist", "per_image", images),
                              ("exact", "pooled", max(1, images // 4))):
        r = measure_throughput(height, width, n, mode=mode, protocol=protocol, bins=bins)
        lines.append(f"{mode:5s} {protocol:9s} {height}x{width} x{n}: update {r['mpx_per_s']:7.1f} Mpx/s,"
                     f" compute {r['compute_s'] * 1e3:8.1f} ms, AUPR {r['aupr']:.4f}")
    return lines
