"""Start ``moose_node`` as a child process (tests, ``moose bag evaluate``, ``moose bench node``, the demo).

The child always runs with :func:`moose_ros.dds.loopback_env` (loopback FastDDS profile and its own
``ROS_DOMAIN_ID``): DDS traffic of processes this project starts never leaves the host. The command line is
``python -m moose_ros.ros.node --ros-args --params-file config/moose.yaml -p name:=value ...``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from moose_ros.dds import loopback_env
from moose_ros.errors import MooseError
from moose_ros.resources import config_path

__all__ = ["log_tail", "node_command", "running_node", "start_node", "stop", "wait_for_topic"]


def _param_value(value: Any) -> str:
    """A parameter value as the YAML text rcl parses after ``-p name:=``."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20).strip()
    return text[:-3].strip() if text.endswith("...") else text


def node_command(
    params: Mapping[str, Any], *, params_file: str | os.PathLike[str] | None = None, extra_args: Sequence[str] = ()
) -> list[str]:
    """The argv that runs the node with ``params_file`` (default: the installed ``config/moose.yaml``) and
    ``params`` as ``-p`` overrides; ``extra_args`` go after them (e.g. ``("-r", "image:=/cam/image_raw")``)."""
    base = Path(params_file) if params_file is not None else config_path("moose.yaml")
    cmd = [sys.executable, "-m", "moose_ros.ros.node", "--ros-args", "--params-file", str(base)]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={_param_value(value)}"]
    cmd += list(extra_args)
    return cmd


def start_node(
    params: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    log_path: str | os.PathLike[str],
    extra_args: Sequence[str] = (),
    params_file: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the node; its stdout and stderr go to ``log_path``.

    Args:
        params: parameter overrides, e.g. ``{"model": "m.onnx", "threads": 1}``.
        env: base environment; its ``ROS_DOMAIN_ID`` is kept (a fresh one otherwise) and the loopback DDS
            profile is always applied on top.
        log_path: file for the node's output (created, appended to).
        extra_args: more ``--ros-args`` arguments (remappings ``-r from:=to``, ``--log-level debug``).
        params_file: base YAML instead of the installed ``config/moose.yaml``.
    """
    base = dict(os.environ if env is None else env)
    domain = base.get("ROS_DOMAIN_ID")
    child_env = loopback_env(int(domain) if domain else None, base=base)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = node_command(params, params_file=params_file, extra_args=extra_args)
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        return subprocess.Popen(cmd, env=child_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def log_tail(log_path: str | os.PathLike[str], lines: int = 30) -> str:
    """The last ``lines`` lines of a node log ('' if the file is missing)."""
    try:
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_for_topic(
    node: Any,
    topic: str,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    timeout_s: float = 60.0,
    log_path: str | os.PathLike[str] | None = None,
    settle_s: float = 1.0,
    executor: Any = None,
) -> None:
    """Spin ``node`` (an rclpy node of the caller) until ``topic`` has a publisher, then ``settle_s`` more.

    The node advertises its outputs only after the model is loaded, so ``/moose_node/anomaly`` appearing means
    "ready". ``settle_s`` leaves discovery time for the caller's subscriptions (first frames can be lost otherwise).
    ``executor``: spin that executor instead of the global one (for nodes in a non-default context).

    Raises:
        MooseError: ``proc`` exited, or ``timeout_s`` passed; with the tail of ``log_path``.
    """
    import rclpy

    def spin() -> None:
        if executor is not None:
            executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(node, timeout_sec=0.05)

    deadline = time.monotonic() + timeout_s
    while node.count_publishers(topic) == 0:
        if proc is not None and proc.poll() is not None:
            tail = log_tail(log_path) if log_path is not None else ""
            raise MooseError(f"moose_node exited with status {proc.returncode} before publishing {topic}:\n{tail}")
        if time.monotonic() > deadline:
            tail = log_tail(log_path) if log_path is not None else ""
            raise MooseError(f"no publisher on {topic} after {timeout_s:.0f} s:\n{tail}")
        spin()
    end = time.monotonic() + settle_s
    while time.monotonic() < end:
        spin()


def stop(proc: subprocess.Popen[bytes], *, timeout_s: float = 10.0) -> int:
    """SIGINT, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    return int(proc.returncode)


@contextlib.contextmanager
def running_node(params: Mapping[str, Any], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """``with running_node({...}, env=..., log_path=...) as proc:`` — :func:`start_node`, then :func:`stop`."""
    proc = start_node(params, **kwargs)
    try:
        yield proc
    finally:
        stop(proc)
