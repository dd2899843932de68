"""``moose_node``: MOoSe anomaly segmentation for camera streams.

Subscribes ``<camera>/image`` (sensor_msgs/Image) and/or ``<camera>/image/compressed``; publishes, with the
input header, ``~/[<camera>/]segmentation`` (mono8 class ids), ``.../segmentation/color`` (rgb8), ``.../anomaly``
(32FC1 raw score), ``.../anomaly/overlay`` (rgb8) and ``.../anomaly/mask`` (mono8 0/255), plus ``/diagnostics``.

Latest frame wins: callbacks only keep the newest message per camera (overwriting an unprocessed one counts a
drop); one worker thread decodes, runs the shared backend and publishes. Raw outputs go out first, colour images
(computed only when subscribed) after them. Images travel as serialized CDR (:mod:`moose_ros.ros.cdr`): inputs are
read zero-copy and outputs built with one copy, skipping rclpy's message conversion. Parameters:
:mod:`moose_ros.ros.params`.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from moose_ros.errors import ConfigError, MessageError, MooseError
from moose_ros.progress import run_with_progress
from moose_ros.ros import cdr, param_sources
from moose_ros.ros import conversions as conv
from moose_ros.ros.camera_info import CameraInfoCache, scale_camera_info
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
from moose_ros.ros.usage import usage, wants_help
from moose_ros.visualize import (
    colorize_labels,
    colormap,
    normalize_scores,
    overlay_heatmap,
    palette_lut,
    threshold_mask,
)

__all__ = ["MooseNode", "main"]

#: output key -> (topic suffix, NodeConfig switch)
OUTPUTS = {
    "anomaly": ("anomaly", "publish_anomaly"),
    "segmentation": ("segmentation", "publish_segmentation"),
    "mask": ("anomaly/mask", "publish_mask"),
    "color": ("segmentation/color", "publish_segmentation_color"),
    "overlay": ("anomaly/overlay", "publish_overlay"),
}
_LOG_EVERY_S = 10.0
_PROGRESS_EVERY_S = 10.0


class _Camera:
    """One input stream: its subscriptions, publishers, counters and the pending (latest) message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = f"{name}/" if name else ""
        self.stats = CameraStats()
        self.publishers: dict[str, Any] = {}
        self.subscriptions: list[Any] = []
        self.pending: tuple[bytes, bool] | None = None  # (serialized message, compressed)
        self.infos = CameraInfoCache()
        self.info_publisher: Any = None


class MooseCore:
    """Everything of the node but its rclpy base class, in steps a lifecycle node can run one transition at a
    time: :meth:`_declare` (parameters), :meth:`_load` (model), :meth:`_open_outputs` (publishers, worker),
    :meth:`_open_inputs` (subscriptions, diagnostics) and their inverses. Mixed into an rclpy ``Node``."""

    def _declare(self, argv: list[str] | None, *, managed: bool = False) -> None:
        """Declare and validate the parameters; log where non-default values came from.

        ``managed``: a lifecycle node, whose start-up parameters may be set while it is unconfigured.

        Raises:
            ConfigError: a bad value (logged as fatal too).
        """
        self._threshold_logged: set[tuple[str, float, str]] = set()
        self._logged_once: set[str] = set()
        self._log_times: dict[tuple[str, str], tuple[float, int]] = {}
        self._cond = threading.Condition()
        self._active = False
        self.backend: Any = None
        self._selected: tuple[str, str] = ("", "")  # (score on ~/anomaly, score the mask thresholds)
        self.cameras: list[_Camera] = []
        self._worker: threading.Thread | None = None
        self._diag_timer: Any = None
        self._diag_pub: Any = None
        self._managed = managed
        try:
            values = declare_parameters(self, managed=managed)
            report_parameters(self, values, param_sources.parse_command_line(sys.argv if argv is None else argv))
            self.config: NodeConfig = config_from_values(values)
        except MooseError as err:
            self.get_logger().fatal(str(err))
            raise
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _load(self) -> None:
        """Check and load the model (building a TensorRT engine when that is the backend), then warm it up."""
        from moose_ros.backends import make_backend

        try:
            self.model_path = _model_path(self.config)
            check_model_file(self.model_path)
            self.backend = self._make_backend_logged(make_backend)
            score = resolve_score(self.config, self.backend.meta.scores)
            self._selected = (score, resolve_mask_score(self.config, score, self.backend.meta.scores))
        except MooseError as err:
            self.get_logger().fatal(str(err))
            raise
        meta = self.backend.meta
        if not self.has_parameter("model_classes"):
            declare_model_info(self, meta.classes, meta.colors)
        self._palette = palette_lut(meta.colors)
        if self.config.warmup:
            self._warmup()

    def _make_backend_logged(self, make_backend: Any) -> Any:
        """``make_backend`` in a helper thread, logging progress every ``_PROGRESS_EVERY_S`` seconds (a first
        TensorRT engine build takes minutes on a Jetson; the node must not look hung meanwhile)."""
        what = "building engine / loading" if self.config.backend in ("auto", "tensorrt") else "loading"
        return run_with_progress(
            lambda: make_backend(self.config.backend, self.model_path, threads=self.config.threads),
            lambda seconds: self.get_logger().info(
                f"{what} {self.model_path} with backend {self.config.backend} ... ({seconds:.0f} s)"),
            _PROGRESS_EVERY_S,
        )

    def _open_outputs(self) -> None:
        """Create the cameras, their publishers and the worker thread."""
        out_qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        self.cameras = [_Camera(name) for name in self.config.cameras]
        for cam in self.cameras:
            cam.infos = CameraInfoCache(on_reject=lambda why, cam=cam: self._reject_camera_info(cam, why))
            for key, (suffix, switch) in OUTPUTS.items():
                if getattr(self.config, switch):
                    cam.publishers[key] = self.create_publisher(Image, f"~/{cam.prefix}{suffix}", out_qos)
            if self.config.publish_camera_info:
                cam.info_publisher = self.create_publisher(CameraInfo, f"~/{cam.prefix}camera_info", out_qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._stopping = False
        self._next = 0
        self._worker = threading.Thread(target=self._work, name="moose_worker", daemon=True)
        self._worker.start()

    def _open_inputs(self) -> None:
        """Subscribe the inputs and start diagnostics; frames are processed and published from now on."""
        reliability = ReliabilityPolicy.RELIABLE if self.config.input_reliability == "reliable" else (
            ReliabilityPolicy.BEST_EFFORT
        )
        in_qos = QoSProfile(depth=self.config.input_depth, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        # camera_info is small and must not be overwritten before it is matched to its frame: a deeper history.
        info_qos = QoSProfile(depth=10, history=HistoryPolicy.KEEP_LAST, reliability=reliability)
        for cam in self.cameras:
            cam.stats = CameraStats()
            if self.config.publish_camera_info:
                cam.subscriptions.append(
                    self.create_subscription(CameraInfo, f"{cam.prefix}camera_info", cam.infos.add, info_qos))
            if self.config.input_transport in ("raw", "both"):
                cam.subscriptions.append(self.create_subscription(
                    Image, f"{cam.prefix}image", lambda m, c=cam: self._on_message(c, m, False), in_qos, raw=True))
            if self.config.input_transport in ("compressed", "both"):
                cam.subscriptions.append(self.create_subscription(
                    CompressedImage, f"{cam.prefix}image/compressed", lambda m, c=cam: self._on_message(c, m, True),
                    in_qos, raw=True))
        self._diag_timer = self.create_timer(self.config.diagnostics_period, self._publish_diagnostics)
        self._active = True

    def _close_inputs(self) -> None:
        """Unsubscribe, stop diagnostics, forget pending frames; a frame in flight is not published."""
        self._active = False
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        with self._cond:
            for cam in self.cameras:
                for sub in cam.subscriptions:
                    self.destroy_subscription(sub)
                cam.subscriptions.clear()
                cam.pending = None

    def _close_outputs(self) -> None:
        """Stop the worker and destroy the publishers."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=10.0)
        self._worker = None
        for cam in self.cameras:
            for pub in [*cam.publishers.values(), cam.info_publisher]:
                if pub is not None:
                    self.destroy_publisher(pub)
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self.cameras = []

    def _unload(self) -> None:
        """Release the backend (and its memory / GPU engine)."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def _log_ready(self) -> None:
        meta = self.backend.meta
        self.get_logger().info(
            f"ready: backend {self.backend.name}, model {meta.architecture} ({meta.num_classes} classes, "
            f"{meta.num_probes} probes) from {self.model_path}, score {self.score}, mask {self.mask_score}, "
            f"cameras {[c.name or '(default)' for c in self.cameras]}"
        )
        self._log_operating_point()

    def _threshold(self, score: str) -> float:
        """The mask threshold for ``score`` (raw-score units); logs each new value and its source once."""
        value, source = operating_threshold(self.config, score, self.backend.meta.extra)
        key = (score, value, source)
        if key not in self._threshold_logged:
            self._threshold_logged.add(key)
            where = {"parameter": "the 'threshold' parameter", "model": "the model's operating point",
                     "fallback": "fallback: 'threshold' unset and the model carries no threshold for this score"}
            self.get_logger().info(f"mask threshold {value:g} for score '{score}' ({where[source]})")
        return value

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
        self.get_logger().info(f"overlay range {shown} for score '{self.score}' ({source})")

    # -- callbacks (executor thread) ---------------------------------------------------------------------------
    def _on_message(self, cam: _Camera, msg: bytes, compressed: bool) -> None:
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
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        changed_point = (score, mask_score, new.threshold, new.score_range) != (
            self.score, self.mask_score, self.config.threshold, self.config.score_range)
        self.config, self._selected = new, (score, mask_score)  # one store: a frame sees both or neither
        if changed_point:
            self._log_operating_point()
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        base = self.get_fully_qualified_name()
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

    def _process(self, cam: _Camera, raw: bytes, compressed: bool) -> None:
        config = self.config
        msg = cdr.parse_any(raw, compressed)
        if isinstance(msg, cdr.CdrCompressed):
            rgb = conv.compressed_to_rgb(msg.data, max_pixels=config.max_pixels)
        else:
            rgb = conv.decode_image(msg.data, msg.height, msg.width, msg.step, msg.encoding,
                                    max_pixels=config.max_pixels)
        wanted = {key: pub for key, pub in cam.publishers.items() if pub.get_subscription_count() > 0}
        if not wanted:
            cam.stats.on_skipped()
            return
        result = self.backend.infer(np.ascontiguousarray(rgb)[None])
        if not self._active:  # deactivated while inferring: publish nothing
            return
        infer_ms = result.timings_ms.get("infer", float("nan"))
        score_name, mask_name = self._selected
        height, width = config.output_size or rgb.shape[:2]
        labels = conv.resize_nearest(result.labels[0], height, width)
        scores = conv.resize_bilinear(result.score(score_name)[0], height, width)
        header = (msg.stamp_sec, msg.stamp_nanosec, msg.frame_id)
        if "anomaly" in wanted:
            wanted["anomaly"].publish(cdr.serialize_image(*header, scores))
        if "segmentation" in wanted:
            wanted["segmentation"].publish(cdr.serialize_image(*header, labels))
        if "mask" in wanted:
            gated = scores
            if mask_name != score_name:
                gated = conv.resize_bilinear(result.score(mask_name)[0], height, width)
            mask = threshold_mask(gated, self._threshold(mask_name))
            wanted["mask"].publish(cdr.serialize_image(*header, mask))
        if "color" in wanted:
            wanted["color"].publish(cdr.serialize_image(*header, colorize_labels(labels, self._palette)))
        if "overlay" in wanted:
            image = conv.resize_bilinear(rgb, height, width)
            value_range, _ = operating_range(config, score_name, self.backend.meta.extra)
            heat = overlay_heatmap(
                image, normalize_scores(scores, value_range), alpha=config.overlay_alpha, cmap=colormap(config.colormap)
            )
            wanted["overlay"].publish(cdr.serialize_image(*header, heat))
        self._publish_camera_info(cam, msg.stamp_ns, header, height, width)
        latency_ms = (self.get_clock().now().nanoseconds - msg.stamp_ns) / 1e6
        cam.stats.on_processed(latency_ms, infer_ms)

    def _publish_camera_info(self, cam: _Camera, stamp_ns: int, header: tuple[int, int, str], height: int,
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

    def _reject_camera_info(self, cam: _Camera, reason: str) -> None:
        """A malformed camera_info: counted as a rejected message, logged (throttled), never forwarded."""
        cam.stats.on_rejected(f"camera_info: {reason}")
        kind = f"camera_info:{reason.split(' ', 1)[0]}"  # one throttle per kind of fault (size, K, P, R, D)
        self._log_rejection(cam, kind, MessageError(reason), topic=f"{cam.prefix}camera_info")

    def _log_once(self, key: str, text: str) -> None:
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.get_logger().info(text)

    def _log_rejection(self, cam: _Camera, reason: str, err: Exception, *, trace: bool = False,
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
        self.get_logger().warning(f"rejected a {kind} on '{topic}': {err}{more}{detail}")
        self._log_times[key] = (now, 0)

    def _warmup(self) -> None:
        # the network's own input size: the warm-up prepares the kernels without allocating a camera-sized frame
        size = self.backend.meta.input_size or (256, 256)
        try:
            self.backend.infer(np.zeros((1, size[0], size[1], 3), dtype=np.uint8))
        except MooseError as err:
            self.get_logger().warning(f"warm-up inference at {size[1]}x{size[0]} failed (continuing): {err}")

    def close(self) -> None:
        """Stop inputs and worker, release the backend and destroy the node."""
        self._close_inputs()
        self._close_outputs()
        self._unload()
        self.destroy_node()


class MooseNode(MooseCore, Node):
    """The ROS 2 adapter around one :class:`~moose_ros.backends.base.Backend` shared by all cameras."""

    def __init__(self, *, argv: list[str] | None = None, **kwargs: Any) -> None:
        """``argv``: the command line the node was started with (default ``sys.argv``), read again to report
        which params file or ``-p`` set each value; ``kwargs`` go to :class:`rclpy.node.Node`."""
        Node.__init__(self, "moose_node", **kwargs)
        self._declare(argv)
        self._load()
        self._open_outputs()
        self._open_inputs()
        self._log_ready()


def _model_path(config: NodeConfig) -> str:
    """The configured model file, or the bundled one (found through the ament index) when ``model`` is empty."""
    from moose_ros.resources import bundled_model_path

    if config.model != "":
        return config.model
    try:
        return str(bundled_model_path())
    except ConfigError as err:
        raise ConfigError(
            f"parameter 'model' is empty and the bundled model is missing ({err}); pass model:=<file.onnx> "
            "(write one with `moose export`)"
        ) from err


def _node_class(argv: list[str]) -> type:
    """:class:`MooseNode`, or the lifecycle node when ``managed`` is true for this node on the command line or in a
    params file that applies to it. Reads every params file once, so a YAML error is one line naming the file."""
    command_line = param_sources.parse_command_line(argv)
    fqn = command_line.node_fqn("moose_node")
    reports = [param_sources.read_params_file(path, fqn) for path in command_line.params_files]
    managed = command_line.value("managed", reports)
    if managed is None or managed is False:
        return MooseNode
    if managed is not True:
        raise ConfigError(f"parameter 'managed' = {managed!r} is invalid: expected true or false")
    from moose_ros.ros.lifecycle import MooseLifecycleNode

    return MooseLifecycleNode


def main(args: list[str] | None = None) -> int:
    """Entry point of ``moose_node``; returns the exit status (2 for configuration or model errors).

    ``-h``/``--help`` prints the usage and returns 0 without initialising ROS. Params files are read once before
    ``rclpy.init`` so a YAML error is one line naming the file. Only rclpy APIs present since Humble are used.
    """
    argv = list(sys.argv if args is None else args)
    if wants_help(argv[1:]):
        print(usage())
        return 0
    spinning = False
    try:
        node_class = _node_class(argv)
        rclpy.init(args=argv)
        node = node_class(argv=argv)
        try:
            spinning = True
            rclpy.spin(node)
        finally:
            node.close()
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except MooseError as err:
        print(f"moose_node: error: {err}", file=sys.stderr)
        return 2
    except _rclpy.RCLError as err:
        if spinning and not rclpy.ok():  # SIGINT/SIGTERM shut the context down while spin built its wait set
            return 0
        print(f"moose_node: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
