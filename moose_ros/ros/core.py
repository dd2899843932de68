"""What ``moose_node`` does, as one object its rclpy node holds: parameters, model, publishers, the worker thread.

:class:`MooseCore` is used by :class:`~moose_ros.ros.node.MooseNode` (everything at start-up) and by
:class:`~moose_ros.ros.lifecycle.MooseLifecycleNode` (one step per lifecycle transition). A frame's path:
subscription callback (raw CDR bytes, latest frame wins) -> worker thread -> decode -> ``FramePipeline.run`` ->
serialised outputs. rclpy APIs used here exist since Humble.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from moose_ros.errors import ConfigError, MessageError, MooseError
from moose_ros.pipeline import FramePipeline, PipelineSettings
from moose_ros.progress import run_with_progress
from moose_ros.resources import model_or_bundled
from moose_ros.ros import cdr, param_sources
from moose_ros.ros import conversions as conv
from moose_ros.ros.camera import OUTPUTS, Camera
from moose_ros.ros.camera_info import scale_camera_info
from moose_ros.ros.declare import declare_model_info, declare_parameters, report_parameters
from moose_ros.ros.diagnostics import CameraStats, build_status
from moose_ros.ros.model_check import check_model_file
from moose_ros.ros.params import (
    NodeConfig,
    config_from_values,
    operating_range,
    operating_threshold,
    plain_value,
    resolve_mask_score,
    resolve_score,
    update_config,
)

__all__ = ["OUTPUTS", "MooseCore"]

_LOG_EVERY_S = 10.0
_PROGRESS_EVERY_S = 10.0


class MooseCore:
    """Everything the node does, held by the rclpy node it works for (composition): the node is message ->
    :class:`~moose_ros.pipeline.FramePipeline` -> messages. In steps a lifecycle node can run one transition at a
    time: construction (parameters), :meth:`load` (model), :meth:`open_outputs` (publishers, worker),
    :meth:`open_inputs` (subscriptions, diagnostics) and their inverses.

    Args:
        node: the rclpy ``Node`` or ``LifecycleNode`` whose parameters, publishers and subscriptions these are.
        argv: the command line the node was started with (default ``sys.argv``), read again to report which
            params file or ``-p`` set each value.
        managed: a lifecycle node, whose start-up parameters may be set while it is unconfigured.

    Raises:
        ConfigError: a bad parameter value (logged as fatal too).
    """

    def __init__(self, node: Any, argv: list[str] | None, *, managed: bool = False) -> None:
        self.node = node
        self._threshold_logged: set[tuple[str, float, str]] = set()
        self._logged_once: set[str] = set()
        self._log_times: dict[tuple[str, str], tuple[float, int]] = {}
        self._cond = threading.Condition()
        self._active = False
        self.backend: Any = None
        self.pipeline: FramePipeline | None = None
        self._selected: tuple[str, str] = ("", "")  # (score on ~/anomaly, score the mask thresholds)
        self.cameras: list[Camera] = []
        self._worker: threading.Thread | None = None
        self._diag_timer: Any = None
        self._diag_pub: Any = None
        self._managed = managed
        try:
            values = declare_parameters(node, managed=managed)
            report_parameters(node, values, param_sources.parse_command_line(sys.argv if argv is None else argv))
            self.config: NodeConfig = config_from_values(values)
        except MooseError as err:
            self.node.get_logger().fatal(str(err))
            raise
        node.add_on_set_parameters_callback(self._on_set_parameters)

    def load(self) -> None:
        """Check and load the model (building a TensorRT engine when that is the backend), then warm it up."""
        from moose_ros.backends import make_backend

        try:
            self.model_path = model_or_bundled(self.config.model)
            check_model_file(self.model_path)
            self.backend = self._make_backend_logged(make_backend)
            score = resolve_score(self.config, self.backend.meta.scores)
            self._selected = (score, resolve_mask_score(self.config, score, self.backend.meta.scores))
        except MooseError as err:
            self.node.get_logger().fatal(str(err))
            raise
        meta = self.backend.meta
        if not self.node.has_parameter("model_classes"):
            declare_model_info(self.node, meta.classes, meta.colors)
        self.pipeline = FramePipeline(self.backend, self._pipeline_settings(self.config, *self._selected))
        if self.config.warmup:
            self._warmup()

    def _make_backend_logged(self, make_backend: Any) -> Any:
        """``make_backend`` in a helper thread, logging progress every ``_PROGRESS_EVERY_S`` seconds (a first
        TensorRT engine build takes minutes on a Jetson; the node must not look hung meanwhile)."""
        what = "building engine / loading" if self.config.backend in ("auto", "tensorrt") else "loading"
        return run_with_progress(
            lambda: make_backend(self.config.backend, self.model_path, threads=self.config.threads),
            lambda seconds: self.node.get_logger().info(
                f"{what} {self.model_path} with backend {self.config.backend} ... ({seconds:.0f} s)"),
            _PROGRESS_EVERY_S,
        )

    def open_outputs(self) -> None:
        """Create the cameras, their publishers and the worker thread."""
        out_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.cameras = [self._camera(name) for name in self.config.cameras]
        for cam in self.cameras:
            for key, (suffix, switch) in OUTPUTS.items():
                if getattr(self.config, switch):
                    cam.publishers[key] = self.node.create_publisher(Image, f"~/{cam.prefix}{suffix}", out_qos)
            if self.config.publish_camera_info:
                cam.info_publisher = self.node.create_publisher(CameraInfo, f"~/{cam.prefix}camera_info", out_qos)
        self._diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._stopping = False
        self._next = 0
        self._worker = threading.Thread(target=self._work, name="moose_worker", daemon=True)
        self._worker.start()

    def _camera(self, name: str) -> Camera:
        """A camera whose malformed camera_info messages this node counts and logs."""
        cam = Camera(name, on_info_reject=lambda why: self._reject_camera_info(cam, why))
        return cam

    def open_inputs(self) -> None:
        """Subscribe the inputs and start diagnostics; frames are processed and published from now on."""
        reliable = self.config.input_reliability == "reliable"
        reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
        in_qos = QoSProfile(depth=self.config.input_depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        # camera_info is small and must not be overwritten before it is matched to its frame: a deeper history.
        info_qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        for cam in self.cameras:
            cam.stats = CameraStats()
            if self.config.publish_camera_info:
                cam.subscriptions.append(
                    self.node.create_subscription(CameraInfo, f"{cam.prefix}camera_info", cam.infos.add, info_qos))
            if self.config.input_transport in ("raw", "both"):
                cam.subscriptions.append(self.node.create_subscription(
                    Image, f"{cam.prefix}image", lambda m, c=cam: self._on_message(c, m, False), in_qos, raw=True))
            if self.config.input_transport in ("compressed", "both"):
                cam.subscriptions.append(self.node.create_subscription(
                    CompressedImage, f"{cam.prefix}image/compressed", lambda m, c=cam: self._on_message(c, m, True),
                    in_qos, raw=True))
        self._diag_timer = self.node.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        self._active = True

    def close_inputs(self, *, destroy: bool = True) -> None:
        """Unsubscribe, stop diagnostics, forget pending frames; a frame in flight is not published.

        ``destroy=False`` (the process is stopping on a signal): only stop; the rclpy entities go with the context.
        """
        self._active = False
        if self._diag_timer is not None:
            if destroy:
                self.node.destroy_timer(self._diag_timer)
            self._diag_timer = None
        with self._cond:
            for cam in self.cameras:
                for sub in cam.subscriptions:
                    if destroy:
                        self.node.destroy_subscription(sub)
                cam.subscriptions.clear()
                cam.pending = None

    def close_outputs(self, *, destroy: bool = True) -> None:
        """Stop the worker and destroy the publishers (``destroy=False``: only stop the worker)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._worker = None
        for cam in self.cameras:
            for pub in [*cam.publishers.values(), cam.info_publisher]:
                if pub is not None and destroy:
                    self.node.destroy_publisher(pub)
        if self._diag_pub is not None:
            if destroy:
                self.node.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self.cameras = []

    def unload(self) -> None:
        """Release the backend (and its memory / GPU engine)."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None
            self.pipeline = None

    def log_ready(self) -> None:
        meta = self.backend.meta
        self.node.get_logger().info(
            f"ready: backend {self.backend.name}, model {meta.architecture} ({meta.num_classes} classes, "
            f"{meta.num_probes} probes) from {self.model_path}, score {self.score}, mask {self.mask_score}, "
            f"cameras {[c.name or '(default)' for c in self.cameras]}"
        )
        self._log_operating_point()

    def _threshold(self, score: str, config: NodeConfig | None = None) -> float:
        """The mask threshold for ``score`` (raw-score units); logs each new value and its source once."""
        config = config if config is not None else self.config
        value, source = operating_threshold(config, score, self.backend.meta.extra)
        key = (score, value, source)
        if key not in self._threshold_logged:
            self._threshold_logged.add(key)
            where = {"parameter": "the 'threshold' parameter", "model": "the model's operating point",
                     "fallback": "fallback: 'threshold' unset and the model carries no threshold for this score"}
            self.node.get_logger().info(f"mask threshold {value:g} for score '{score}' ({where[source]})")
        return value

    def _pipeline_settings(self, config: NodeConfig, score: str, mask_score: str) -> PipelineSettings:
        """What the frame pipeline needs from the parameters and the model's operating points."""
        value_range, _ = operating_range(config, score, self.backend.meta.extra)
        return PipelineSettings(score=score, mask_score=mask_score, threshold=self._threshold(mask_score, config),
                                value_range=value_range, output_size=config.output_size,
                                overlay_alpha=config.overlay_alpha, colormap=config.colormap)

    @property
    def score(self) -> str:
        """The score published on ``~/anomaly`` and shown in the overlay."""
        return self._selected[0]

    @property
    def mask_score(self) -> str:
        """The score ``~/anomaly/mask`` thresholds (``<score>_road`` with ``roi: road``)."""
        return self._selected[1]

    def _log_operating_point(self) -> None:
        """Log the mask's score and threshold and the overlay range in effect, with their sources."""
        self._threshold(self.mask_score)
        value_range, source = operating_range(self.config, self.score, self.backend.meta.extra)
        shown = "per-frame 1-99th percentiles" if value_range is None else f"[{value_range[0]:g}, {value_range[1]:g}]"
        self.node.get_logger().info(f"overlay range {shown} for score '{self.score}' ({source})")

    # -- callbacks (executor thread) ---------------------------------------------------------------------------
    def _on_message(self, cam: Camera, msg: bytes, compressed: bool) -> None:
        with self._cond:
            replaced = cam.pending is not None
            cam.pending = (msg, compressed)
            self._cond.notify()
        cam.stats.on_received(replaced)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        changes = {p.name: plain_value(p.value) for p in params if p.name in self.config.__dataclass_fields__}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            unconfigured = self._managed and self.backend is None
            new = update_config(self.config, changes, unconfigured=unconfigured, managed=self._managed)
            if self.backend is None:  # not configured yet (lifecycle): model and score are checked at configure
                self.config = new
                return SetParametersResult(successful=True)
            score = resolve_score(new, self.backend.meta.scores)
            mask_score = resolve_mask_score(new, score, self.backend.meta.scores)
            settings = self._pipeline_settings(new, score, mask_score)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        changed_point = (score, mask_score, new.threshold, new.score_range) != (
            self.score, self.mask_score, self.config.threshold, self.config.score_range)
        self.config, self._selected = new, (score, mask_score)
        self.pipeline.settings = settings  # one store: a frame sees the old settings or the new ones
        if changed_point:
            self._log_operating_point()
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.node.get_clock().now().to_msg()
        base = self.node.get_fully_qualified_name()
        for cam in self.cameras:
            array.status.append(build_status(
                f"{base}: {cam.name or 'image'}", cam.name or "default", cam.stats.snapshot(),
                backend=self.backend.name, max_drop_ratio=self.config.max_drop_ratio,
                max_latency_ms=self.config.max_latency_ms, input_timeout_s=self.config.input_timeout_s,
            ))
        self._diag_pub.publish(array)

    # -- worker thread -----------------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and all(c.pending is None for c in self.cameras):
                    self._cond.wait()
                if self._stopping:
                    return
                count = len(self.cameras)
                order = [self.cameras[(self._next + i) % count] for i in range(count)]
                cam = next(c for c in order if c.pending is not None)
                self._next = (self.cameras.index(cam) + 1) % count
                msg, compressed = cam.pending  # type: ignore[misc]
                cam.pending = None
            try:
                self._process(cam, msg, compressed)
            except MooseError as err:  # bad frame or failed inference: count, log, keep serving
                cam.stats.on_rejected(str(err))
                self._log_rejection(cam, getattr(err, "reason", type(err).__name__), err)
            except Exception as err:  # the node boundary: a bug must not silently stop the worker thread
                cam.stats.on_rejected(f"internal error: {err!r}")
                self._log_rejection(cam, f"internal:{type(err).__name__}", err, trace=True)

    def _process(self, cam: Camera, raw: bytes, compressed: bool) -> None:
        """One frame: message -> RGB -> :class:`~moose_ros.pipeline.FramePipeline` -> messages."""
        msg = cdr.parse_any(raw, compressed)
        if isinstance(msg, cdr.CdrCompressed):
            rgb = conv.compressed_to_rgb(msg.data, max_pixels=self.config.max_pixels)
        else:
            rgb = conv.decode_image(msg.data, msg.height, msg.width, msg.step, msg.encoding,
                                    max_pixels=self.config.max_pixels)
        wanted = {key: pub for key, pub in cam.publishers.items() if pub.get_subscription_count() > 0}
        if not wanted:
            cam.stats.on_skipped()
            return
        frame = self.pipeline.run(rgb, wanted)
        if not self._active:  # deactivated while inferring: publish nothing
            return
        header = (msg.stamp_sec, msg.stamp_nanosec, msg.frame_id)
        for key in OUTPUTS:  # the topic table's order: raw outputs first
            if key in frame.arrays:
                wanted[key].publish(cdr.serialize_image(*header, frame.arrays[key]))
        self._publish_camera_info(cam, msg.stamp_ns, header, *frame.size)
        latency_ms = (self.node.get_clock().now().nanoseconds - msg.stamp_ns) / 1e6
        cam.stats.on_processed(latency_ms, frame.infer_ms)

    def _publish_camera_info(self, cam: Camera, stamp_ns: int, header: tuple[int, int, str], height: int,
                             width: int) -> None:
        """``~/camera_info`` for this frame: the input camera_info with its stamp (else the newest), scaled to
        ``height`` x ``width`` and stamped with the outputs' header."""
        if cam.info_publisher is None or cam.info_publisher.get_subscription_count() == 0:
            return
        info, exact = cam.infos.match(stamp_ns)
        if info is None:
            return
        if not exact:
            self._log_once(f"camera_info:{cam.name}", f"no camera_info with the stamp of a frame on "
                           f"'{cam.prefix}image'; using the newest one received")
        cam.info_publisher.publish(scale_camera_info(info, height, width, header[:2], header[2]))

    def _reject_camera_info(self, cam: Camera, reason: str) -> None:
        """A malformed camera_info: counted as a rejected message, logged (throttled), never forwarded."""
        cam.stats.on_rejected(f"camera_info: {reason}")
        kind = f"camera_info:{reason.split(' ', 1)[0]}"  # one throttle per kind of fault (size, K, P, R, D)
        self._log_rejection(cam, kind, MessageError(reason), topic=f"{cam.prefix}camera_info")

    def _log_once(self, key: str, text: str) -> None:
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.node.get_logger().info(text)

    def _log_rejection(self, cam: Camera, reason: str, err: Exception, *, trace: bool = False,
                       topic: str | None = None) -> None:
        """One warning per (camera, reason) every ``_LOG_EVERY_S`` seconds, saying how many were suppressed."""
        key = (cam.name, reason)
        now = time.monotonic()
        last, suppressed = self._log_times.get(key, (-1e9, 0))
        if now - last < _LOG_EVERY_S:
            self._log_times[key] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more like it since the last report)" if suppressed else ""
        topic = topic or f"{cam.prefix}image"
        kind = "message" if topic.endswith("camera_info") else "frame"
        detail = "\n" + "".join(traceback.format_exception(err)) if trace else ""
        self.node.get_logger().warning(f"rejected a {kind} on '{topic}': {err}{more}{detail}")
        self._log_times[key] = (now, 0)

    def _warmup(self) -> None:
        # the network's own input size: the warm-up prepares the kernels without allocating a camera-sized frame
        size = self.backend.meta.input_size or (256, 256)
        try:
            self.backend.infer(np.zeros((1, size[0], size[1], 3), dtype=np.uint8))
        except MooseError as err:
            self.node.get_logger().warning(f"warm-up inference at {size[1]}x{size[0]} failed (continuing): {err}")

    def close(self, *, destroy: bool = True) -> None:
        """Stop inputs and worker and release the backend (the caller destroys its node).

        ``destroy=False`` when a signal stopped the process: rclpy's signal handling shuts the context down on its
        own, and the entities go with the context and the process. Destroying them while the context is being shut
        down is the suspected cause of rare stops that hung past 30 s on Jazzy (about one suite run in ten), so a
        signalled stop only stops the worker and releases the backend.
        """
        self.close_inputs(destroy=destroy)
        self.close_outputs(destroy=destroy)
        self.unload()
