"""``moose bench memory`` runs both ONNX Runtime arena settings in child processes and prints their table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from moose_ros.ros.bench import passthrough_model


def test_bench_memory_prints_both_arena_settings(tmp_path: Path) -> None:
    model = passthrough_model(tmp_path / "passthrough.onnx")
    proc = subprocess.run([sys.executable, "-m", "moose_ros.cli", "bench", "memory", "--model", str(model),
                           "--size", "32x48", "--large", "256x384", "--frames", "2", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| on") or line.startswith("| off")]
    assert len(rows) == 2
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        steady, after, back, ms = (float(c) for c in cells[1:])
        assert steady > 0 and after >= steady * 0.5 and back > 0 and ms > 0
    bad = subprocess.run([sys.executable, "-m", "moose_ros.cli", "bench", "memory", "--model", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no such file" in bad.stderr and "Traceback" not in bad.stderr
