"""``moose bench memory``: does one large frame pin the ONNX Runtime backend's memory, and what does the arena buy?

For each setting of ONNX Runtime's CPU memory arena (on: ORT's default; off: the node's default) a fresh child
process loads the fused graph, runs ``frames`` frames at the camera ``size`` (resident set size after them =
the steady size), one frame at the ``large`` size, and the camera-size frames again. Reported per setting: RSS
steady / after the large frame / after returning to the camera size (MiB), and the median latency at the camera
size before the large frame (ms). Each setting runs in its own process so neither sees the other's allocations.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["format_memory_table", "measure_arena", "run_memory_bench"]


def _rss_mib() -> float:
    """Resident set size of this process in MiB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_arena(model: str, arena: bool, size: tuple[int, int], large: tuple[int, int], frames: int,
                  threads: int | None) -> dict[str, Any]:
    """One setting, in the calling process: RSS (MiB) steady / after the large frame / back, and median ms."""
    from moose_ros.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model, threads=threads, arena=arena)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, *size, 3), dtype=np.uint8)
    big = rng.integers(0, 256, (1, *large, 3), dtype=np.uint8)
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        backend.infer(frame)
        times.append((time.perf_counter() - start) * 1e3)
    steady = _rss_mib()
    backend.infer(big)
    after_large = _rss_mib()
    for _ in range(frames):
        backend.infer(frame)
    back = _rss_mib()
    backend.close()
    return {"arena": arena, "steady_mib": steady, "after_large_mib": after_large, "back_mib": back,
            "median_ms": statistics.median(times[1:] or times)}


def _child(queue: Any, *args: Any) -> None:
    queue.put(measure_arena(*args))


def run_memory_bench(model: Path, size: tuple[int, int], large: tuple[int, int], frames: int = 5,
                     threads: int | None = None) -> list[dict[str, Any]]:
    """Both arena settings, each in a fresh ``spawn`` child process; returns one result dict per setting."""
    ctx = multiprocessing.get_context("spawn")
    results = []
    for arena in (True, False):
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(queue, str(model), arena, size, large, frames, threads))
        proc.start()
        results.append(queue.get(timeout=1800))
        proc.join()
    return results


def format_memory_table(results: list[dict[str, Any]], size: tuple[int, int], large: tuple[int, int]) -> str:
    """The Markdown table of :func:`run_memory_bench`."""
    lines = [f"| ORT CPU arena | RSS steady at {size[0]}x{size[1]} MiB | after one {large[0]}x{large[1]} frame MiB | "
             f"back at {size[0]}x{size[1]} MiB | median ms at {size[0]}x{size[1]} |", "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {'on' if r['arena'] else 'off (node default)'} | {r['steady_mib']:.0f} | "
                     f"{r['after_large_mib']:.0f} | {r['back_mib']:.0f} | {r['median_ms']:.3g} |")
    return "\n".join(lines)
