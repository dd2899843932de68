"""The rclpy side of ``moose bag evaluate``: publish bag payloads into the node, receive its outputs.

A :class:`ReplayClient` owns one participant in its own :class:`rclpy.Context` (domain given explicitly), a
publisher that sends bag payloads as they are (rosbags CDR bytes equal rclpy's, so no re-serialisation), and
raw subscriptions on the node's outputs. An executor thread receives outputs as soon as they arrive and stamps
their receipt time with ``time.monotonic_ns``; the caller drains them with :meth:`ReplayClient.take`. Decoding
and metrics happen in the caller (``moose_ros.bag.evaluate``), which needs no rclpy.

The loopback FastDDS profile must be in this process's environment before its first DDS participant exists:
:func:`use_loopback_profile` sets it (``moose_ros.dds`` builds the values).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from moose_ros.dds import loopback_env
from moose_ros.errors import MooseError

__all__ = ["Received", "ReplayClient", "use_loopback_profile"]

_MSG_CLASSES = {
    "sensor_msgs/msg/Image": ("sensor_msgs.msg", "Image"),
    "sensor_msgs/msg/CompressedImage": ("sensor_msgs.msg", "CompressedImage"),
}


def use_loopback_profile() -> None:
    """Put the loopback DDS settings of :func:`moose_ros.dds.loopback_env` into ``os.environ``.

    Only the transport settings are applied (profile file, RMW, no discovery-range override); the domain is
    passed to :class:`ReplayClient` explicitly, so the process's own ``ROS_DOMAIN_ID`` is left alone. Fast DDS
    reads the profile when the process's first participant is created: call this before any rclpy use.
    """
    env = loopback_env(0)
    for key in ("FASTDDS_DEFAULT_PROFILES_FILE", "RMW_IMPLEMENTATION"):
        os.environ[key] = env[key]
    os.environ.setdefault("AMENT_PREFIX_PATH", env["AMENT_PREFIX_PATH"])
    for key in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS"):
        os.environ.pop(key, None)


def _msg_class(msgtype: str) -> type:
    import importlib

    if msgtype not in _MSG_CLASSES:
        raise MooseError(f"replay: cannot publish {msgtype}; supported: {sorted(_MSG_CLASSES)}")
    module, name = _MSG_CLASSES[msgtype]
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Received:
    """One output message: ``key`` (e.g. ``"anomaly"``), CDR ``payload``, receipt ``time.monotonic_ns()``."""

    key: str
    payload: bytes
    receipt_ns: int


class ReplayClient:
    """Publisher of bag payloads on ``input_topic`` and raw subscriber of the node's ``outputs``.

    Args:
        domain_id: ROS_DOMAIN_ID of the node under test.
        input_topic: topic the node subscribes to (after remapping), e.g. ``/camera/image``.
        input_type: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        outputs: key -> output topic (sensor_msgs/Image), e.g. ``{"anomaly": "/moose_node/anomaly"}``.
        diagnostics_topic: also receive this ``diagnostic_msgs/DiagnosticArray`` topic under the key
            ``"diagnostics"`` (None: do not subscribe).
        reliable_input: publish reliably (a best-effort subscriber still matches).
        input_depth: publisher history depth.

    Use as a context manager; :meth:`close` stops the executor thread and shuts the context down.
    """

    def __init__(
        self,
        *,
        domain_id: int,
        input_topic: str,
        input_type: str,
        outputs: Mapping[str, str],
        reliable_input: bool = True,
        input_depth: int = 1,
        diagnostics_topic: str | None = None,
        node_name: str = "moose_bag_replay",
    ) -> None:
        use_loopback_profile()
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self._queue: queue.Queue[Received] = queue.Queue()
        self._context = rclpy.Context()
        rclpy.init(context=self._context, domain_id=int(domain_id))
        try:
            self._node = rclpy.create_node(node_name, context=self._context)
            in_qos = QoSProfile(
                depth=max(1, int(input_depth)),
                history=HistoryPolicy.KEEP_LAST,
                reliability=ReliabilityPolicy.RELIABLE if reliable_input else ReliabilityPolicy.BEST_EFFORT,
            )
            self._publisher = self._node.create_publisher(_msg_class(input_type), input_topic, in_qos)
            out_qos = QoSProfile(depth=16, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
            self._subscriptions = {
                key: self._node.create_subscription(
                    Image, topic, lambda data, k=key: self._on_output(k, data), out_qos, raw=True
                )
                for key, topic in outputs.items()
            }
            if diagnostics_topic is not None:
                self._diagnostics = self._node.create_subscription(
                    DiagnosticArray, diagnostics_topic, lambda data: self._on_output("diagnostics", data), 10, raw=True
                )
            self._executor = SingleThreadedExecutor(context=self._context)
            self._executor.add_node(self._node)
        except BaseException:
            rclpy.shutdown(context=self._context)
            raise
        self.input_topic = input_topic
        self.outputs = dict(outputs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="moose_bag_replay", daemon=True)
        self._thread.start()

    def _on_output(self, key: str, data: bytes) -> None:
        self._queue.put(Received(key, bytes(data), time.monotonic_ns()))

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while not self._stop.is_set() and self._context.ok():
                self._executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, KeyboardInterrupt):
            pass

    def connected(self) -> bool:
        """True when the node subscribes to the input and publishes every output this client listens to."""
        if self._publisher.get_subscription_count() < 1:
            return False
        return all(sub.get_publisher_count() >= 1 for sub in self._subscriptions.values())

    def wait_connected(self, timeout_s: float, *, settle_s: float = 1.0, alive: object = None) -> None:
        """Block until :meth:`connected`, then ``settle_s`` more for discovery to finish on both sides.

        Args:
            timeout_s: give up after this many seconds.
            settle_s: extra wait once matched (the first frames can be lost otherwise).
            alive: optional callable returning False when the node process has died (checked while waiting).

        Raises:
            MooseError: not connected within ``timeout_s``, or ``alive()`` turned False.
        """
        deadline = time.monotonic() + timeout_s
        while not self.connected():
            if callable(alive) and not alive():
                raise MooseError("replay: the node process exited before its topics appeared")
            if time.monotonic() > deadline:
                missing = [t for k, t in self.outputs.items() if self._subscriptions[k].get_publisher_count() < 1]
                if self._publisher.get_subscription_count() < 1:
                    missing.insert(0, f"a subscriber of {self.input_topic}")
                raise MooseError(f"replay: after {timeout_s:.0f} s still no {', '.join(missing)}")
            time.sleep(0.05)
        time.sleep(settle_s)

    def publish(self, payload: bytes) -> int:
        """Publish one CDR payload as is; returns the ``time.monotonic_ns()`` just before sending."""
        sent_ns = time.monotonic_ns()
        self._publisher.publish(payload)
        return sent_ns

    def take(self, timeout_s: float = 0.0) -> list[Received]:
        """Everything received so far, waiting up to ``timeout_s`` for the first item when none is queued."""
        items: list[Received] = []
        try:
            items.append(self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait())
        except queue.Empty:
            return items
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def close(self) -> None:
        """Stop the executor thread, destroy the node and shut the context down (idempotent)."""
        import rclpy

        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5.0)
        self._executor.shutdown(timeout_sec=1.0)
        self._node.destroy_node()
        if self._context.ok():
            rclpy.shutdown(context=self._context)

    def __enter__(self) -> ReplayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
