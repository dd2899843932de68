"""``moose bench node`` end to end on tiny frames: it runs the node over loopback DDS and reports sane numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moose_ros.ros.bench import SizeResult, format_table

pytestmark = pytest.mark.ros


def test_bench_node_runs_and_reports(tmp_path: Path, ros_env: dict[str, str]) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "moose_ros.cli", "bench", "node", "--model", "passthrough", "--threads", "1",
           "--sizes", "48x64", "64x96", "--frames", "4", "--warmup", "1", "--overload-seconds", "1",
           "--json", str(out), "--log-dir", str(tmp_path / "logs")]
    done = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| 48x64 | 4 |" in done.stdout and "| 64x96 | 4 |" in done.stdout  # HEIGHTxWIDTH
    results = [SizeResult(**r) for r in json.loads(out.read_text())]
    assert [(r.height, r.width) for r in results] == [(48, 64), (64, 96)]
    for r in results:
        assert r.inference_ms > 0 and 0 < r.e2e_p50_ms <= r.e2e_p95_ms
        assert 0 < r.overhead_p50_ms < r.e2e_p50_ms  # per-frame e2e minus that frame's inference
        assert r.target_ms == 8.0
        assert 20 <= r.overload_published <= 31 and 1 <= r.overload_processed <= r.overload_published
        assert r.overload_p95_ms is not None and r.overload_p95_ms > 0


def test_format_table_marks_targets() -> None:
    fast = SizeResult(1280, 720, 30, 100.0, 105.0, 110.0, 5.0, 8.0, 150, 60, 150.0, 90)
    slow = SizeResult(2048, 1024, 30, 100.0, 130.0, 150.0, 30.0, 15.0, 150, 20, 250.0, 130)
    table = format_table([fast, slow]).splitlines()
    assert "5.0 (ok <= 8)" in table[2] and "150.0 (ok, 2x = 200.0)" in table[2]
    assert "30.0 (over <= 15)" in table[3] and "250.0 (over, 2x = 200.0)" in table[3]
