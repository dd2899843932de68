"""The one place that builds the environment for every ROS 2 process the project starts.

DDS traffic must stay on loopback: each process the tests, the demo, the benchmarks and ``moose bag evaluate``
start gets ``FASTDDS_DEFAULT_PROFILES_FILE`` = ``config/fastdds_loopback.xml`` (builtin transports off, SHM plus
UDPv4 allowed on 127.0.0.1 only, 127.0.0.1 as the only initial peer) and its own ``ROS_DOMAIN_ID``.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Mapping
from pathlib import Path

from moose_ros.resources import config_path

__all__ = ["allocate_domain_id", "loopback_env", "loopback_profile"]

#: Domain ids handed out by :func:`allocate_domain_id` (FastDDS port formula is valid up to 232; stay low).
_DOMAIN_RANGE = (20, 99)
_used: set[int] = set()


def loopback_profile() -> Path:
    """Path of the loopback FastDDS profile shipped in ``config/``."""
    return config_path("fastdds_loopback.xml")


def allocate_domain_id() -> int:
    """A ROS_DOMAIN_ID not yet handed out by this process, spread by pid so parallel runs rarely collide."""
    low, high = _DOMAIN_RANGE
    span = high - low + 1
    rng = random.Random(os.getpid() * 7919 + len(_used))
    for _ in range(span):
        candidate = low + rng.randrange(span)
        if candidate not in _used:
            _used.add(candidate)
            return candidate
    _used.clear()
    return allocate_domain_id()


def loopback_env(
    domain_id: int | None = None,
    *,
    base: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
) -> dict[str, str]:
    """Environment for a ROS 2 process (or this one) that keeps DDS on loopback.

    Args:
        domain_id: ``ROS_DOMAIN_ID``; a fresh one from :func:`allocate_domain_id` when None.
        base: environment to start from (default ``os.environ``).
        log_dir: ``ROS_LOG_DIR`` (default: leave as is).

    Returns:
        A new dict; ``base`` is not modified.
    """
    env = dict(os.environ if base is None else base)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(loopback_profile())
    env["ROS_DOMAIN_ID"] = str(allocate_domain_id() if domain_id is None else int(domain_id))
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    # ROS_AUTOMATIC_DISCOVERY_RANGE overrides the XML transports and loses large frames: never inherit it.
    env.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    env.pop("ROS_STATIC_PEERS", None)
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    if log_dir is not None:
        env["ROS_LOG_DIR"] = str(log_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env
