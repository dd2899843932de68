"""Shared fixtures. Every ROS 2 participant a test creates, in this process or a child, uses the loopback
FastDDS profile and a domain id of its own (moose_ros.dds is the single place that builds that environment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moose_ros.dds import allocate_domain_id, loopback_env

REPO = Path(__file__).resolve().parents[1]

# This test process itself: loopback profile before any DDS participant can exist.
os.environ.update(loopback_env(log_dir=os.environ.get("ROS_LOG_DIR", "/tmp/moose_ros_test_logs")))


@pytest.fixture
def ros_domain() -> int:
    """A fresh ROS_DOMAIN_ID for one test (use with ``rclpy.init(domain_id=...)`` and :func:`ros_env`)."""
    return allocate_domain_id()


@pytest.fixture
def ros_env(ros_domain: int, tmp_path: Path) -> dict[str, str]:
    """Environment for child ROS processes of one test: loopback profile, the test's domain, logs in tmp."""
    return loopback_env(ros_domain, log_dir=tmp_path / "ros_logs")


@pytest.fixture(scope="module")
def torch_threads(request: pytest.FixtureRequest):
    """Limit torch to the module's ``TORCH_THREADS`` (default 1) for the module, then restore.

    Use with ``pytestmark = pytest.mark.usefixtures("torch_threads")``; torch is imported only here, lazily.
    """
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(int(getattr(request.module, "TORCH_THREADS", 1)))
    yield
    torch.set_num_threads(old)
