"""Code standards that CI enforces: ruff-clean, and lazy imports per layer (layers: docs/INTERFACES.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        # `make test` (what CI runs) sets MOOSE_REQUIRE_LINT: there a missing linter is a failure, not a skip
        if os.environ.get("MOOSE_REQUIRE_LINT"):
            pytest.fail("ruff is not installed but `make test` requires the lint check (pip install -e '.[dev]')")
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([ruff, "check", "moose_ros", "test", "launch", "setup.py"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("module", ["moose_ros.scoring", "moose_ros.metrics", "moose_ros.data",
                                    "moose_ros.visualize", "moose_ros.backends", "moose_ros.cli"])
def test_core_modules_import_without_torch_or_rclpy(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules, 'rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"], f"{module} pulls in torch/rclpy: {out}"
