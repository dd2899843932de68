"""``moose engine build`` as a user runs it here (no TensorRT), and the progress helper it shares with the node."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from moose_ros.progress import run_with_progress


def _moose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "moose_ros.cli", *args], capture_output=True, text=True, timeout=120)


def test_engine_build_help_names_the_options() -> None:
    proc = _moose("engine", "build", "--help")
    assert proc.returncode == 0, proc.stderr
    for option in ("--fp16", "--fp32", "--cache-dir", "--max-pixels", "--device"):
        assert option in proc.stdout


def test_engine_build_of_a_missing_model_is_one_line(tmp_path: Path) -> None:
    proc = _moose("engine", "build", str(tmp_path / "nope.onnx"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.onnx" in lines[0] and "not an existing .onnx file" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_engine_build_without_tensorrt_says_what_is_missing(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")  # only needs to exist: TensorRT is looked for before the graph is read
    proc = _moose("engine", "build", str(model), "--fp32", "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT" in lines[0] and "not installed" in lines[0], proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing half-written


def test_run_with_progress_reports_while_waiting_and_returns_the_result() -> None:
    seen: list[float] = []
    reported_twice = threading.Event()

    def report(seconds: float) -> None:
        seen.append(seconds)
        if len(seen) == 2:
            reported_twice.set()

    # the work ends only once the caller has reported twice: it must report while the work runs
    assert run_with_progress(lambda: reported_twice.wait(60) and 42, report, every_s=0.05) == 42
    assert len(seen) >= 2 and seen == sorted(seen) and seen[0] >= 0.05


def test_run_with_progress_re_raises_in_the_callers_thread() -> None:
    def fail() -> None:
        raise RuntimeError("engine build failed")

    with pytest.raises(RuntimeError, match="engine build failed"):
        run_with_progress(fail, lambda _s: None, every_s=0.05)
