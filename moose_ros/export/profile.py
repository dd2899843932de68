"""Where a fused graph spends its time: ONNX Runtime's profiler, summed per op type and per graph part.

:func:`profile_graph` runs an ``.onnx`` file a few times with ORT's profiler on and returns kernel time (the sum of
node kernel durations, not wall time) split three ways:

- per op type (``Conv``, ``Resize``, ``ArgMax``, ...);
- ``pre_post``: nodes at the fused module's top level (the legacy exporter names them ``/<Op>_<i>``: cast,
  resize and normalisation before the network; head fusion, scores, labels, upsampling after it) versus
  ``network``: every other node (names carry the module scope, e.g. ``/model/backbone/...``, ``/members.1/...``,
  or were made by ONNX Runtime's own layout transforms around convolutions);
- ``conv_share``: the share of ``Conv`` kernels, the figure of merit of the post-processing issue (the network's
  own convolutions should dominate).

onnxruntime is imported lazily; torch is not needed.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TOP_LEVEL", "profile_graph"]

#: Node names of the fused module's own ops (no module scope): the pre- and post-processing.
TOP_LEVEL = re.compile(r"/[^/]+")


def _kernel_events(trace: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """(node name, op type, microseconds) of every node kernel event in an ORT profile trace."""
    out = []
    for event in trace:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        args = event.get("args", {})
        out.append((str(event["name"])[: -len("_kernel_time")], str(args.get("op_name", "?")), float(event["dur"])))
    return out


def profile_graph(
    model_path: str | os.PathLike[str], image: np.ndarray, *, runs: int = 3, threads: int = 1
) -> dict[str, Any]:
    """Profile ``model_path`` on ``image`` (uint8 [N, H, W, 3]) over ``runs`` runs after one warm-up.

    Returns:
        ``{"kernel_ms": per-run kernel time, "by_op_ms": {op: ms per run}, "top_ops": [(op, share)] (3 largest),
        "conv_share", "network_share", "pre_post_share", "pre_post_ms"}``; shares are fractions of kernel time.
    """
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="moose_profile_") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: image})
        # Only the timed runs count: the warm-up's events are dropped by counting from the end.
        for _ in range(runs):
            session.run(None, {name: image})
        trace = json.loads(Path(session.end_profiling()).read_text())
    events = _kernel_events(trace)
    per_run = len(events) // (runs + 1)
    events = events[-per_run * runs :] if per_run else []
    by_op: dict[str, float] = defaultdict(float)
    pre_post = 0.0
    for node, op, dur in events:
        by_op[op] += dur / 1e3 / runs
        if TOP_LEVEL.fullmatch(node):
            pre_post += dur / 1e3 / runs
    total = sum(by_op.values()) or float("nan")
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:3]
    return {
        "kernel_ms": total,
        "by_op_ms": dict(sorted(by_op.items(), key=lambda kv: -kv[1])),
        "top_ops": [(op, ms / total) for op, ms in top],
        "conv_share": by_op.get("Conv", 0.0) / total,
        "network_share": (total - pre_post) / total,
        "pre_post_share": pre_post / total,
        "pre_post_ms": pre_post,
    }
