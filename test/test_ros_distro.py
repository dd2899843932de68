"""The ROS 2 distribution under test is the one asked for and the only one in the venv: `make test` sets
MOOSE_ROS_DISTRO for its run in `.venv-jazzy`, so the Jazzy part cannot silently run on Kilted wheels."""

from __future__ import annotations

import importlib.metadata
import os

import pytest

DISTROS = ("kilted", "jazzy")
#: rclpy's major version per distribution (Jazzy 7.x, Kilted 9.x)
RCLPY_MAJOR = {"jazzy": 7, "kilted": 9}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def test_one_distribution_per_venv() -> None:
    installed = {d: v for d in DISTROS if (v := _version(f"ros-{d}-rclpy")) is not None}
    if not installed:
        pytest.skip("no ROS 2 wheels in this venv")
    assert len(installed) == 1, f"two distributions in one venv (their modules collide): {installed}"
    (distro, version), = installed.items()
    expected = os.environ.get("MOOSE_ROS_DISTRO")
    if expected is not None:
        assert distro == expected, f"asked to test {expected}, this venv holds {distro}"
    import rclpy

    assert int(version.split(".")[0]) == RCLPY_MAJOR[distro], (distro, version, rclpy.__file__)
