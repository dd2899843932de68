"""Shared helpers for the node tests (imported by test_ros_*.py; holds no tests itself).

``tiny_fused_onnx`` writes a small graph by hand (no torch: the node never imports it) that honours the fused
graph's contract (``moose_ros/backends/base.py``): input ``image`` uint8 [N, H, W, 3] RGB, outputs ``labels`` uint8
[N, H, W] (argmax of a conv head), ``anomaly`` float32 (max-logit score, -max logit) and ``anomaly_msp``
(-max softmax), ``ModelMeta`` JSON in the metadata; ``depth`` stacks 3x3 convs to make it as slow as a test needs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.backends.base import META_KEY, ModelMeta

CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car")
COLORS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180), (0, 0, 142))


def tiny_fused_onnx(path: Path, *, depth: int = 0, width: int = 16, seed: int = 0,
                    scores: tuple[str, ...] = ("max_logit", "msp")) -> Path:
    """Write the test graph to ``path`` (see module docstring) and return it.

    ``scores``: the outputs in order (``anomaly`` = the first, ``anomaly_<name>`` the rest), each of "max_logit"
    (-max logit), "msp" (-max softmax) and "entropy" (of the softmax, nats).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["image"], ["img_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["img_f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "scale"], ["x0"]),
    ]
    inits = [numpy_helper.from_array(np.array(1.0 / 255.0, dtype=np.float32), "scale"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "class_axis")]
    channels, current = 3, "x0"
    for i in range(depth):
        w = (rng.standard_normal((width, channels, 3, 3)) / np.sqrt(channels * 9)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [current, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        channels, current = width, f"r{i}"
    num_classes = len(CLASSES)
    head = (rng.standard_normal((num_classes, channels, 1, 1)) * 4.0).astype(np.float32)
    bias = rng.standard_normal(num_classes).astype(np.float32)
    inits += [numpy_helper.from_array(head, "head_w"), numpy_helper.from_array(bias, "head_b")]
    nodes += [
        helper.make_node("Conv", [current, "head_w", "head_b"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["argmax"], axis=1, keepdims=0),
        helper.make_node("Cast", ["argmax"], ["labels"], to=TensorProto.UINT8),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"])]
    for index, name in enumerate(scores):
        out = "anomaly" if index == 0 else f"anomaly_{name}"
        if name == "max_logit":
            nodes += [helper.make_node("ReduceMax", ["logits"], ["maxlogit"], axes=[1], keepdims=0),
                      helper.make_node("Neg", ["maxlogit"], [out])]
        elif name == "msp":
            nodes += [helper.make_node("ReduceMax", ["probs"], ["maxprob"], axes=[1], keepdims=0),
                      helper.make_node("Neg", ["maxprob"], [out])]
        elif name == "entropy":
            nodes += [helper.make_node("LogSoftmax", ["logits"], ["logp"], axis=1),
                      helper.make_node("Mul", ["probs", "logp"], ["plogp"]),
                      helper.make_node("ReduceSum", ["plogp", "class_axis"], ["neg_h"], keepdims=0),
                      helper.make_node("Neg", ["neg_h"], [out])]
        else:
            raise ValueError(f"tiny_fused_onnx: score {name!r} is not built")
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", "H", "W"]))
    graph = helper.make_graph(nodes, "tiny_fused_moose",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMeta(
        architecture="tiny_test_graph",
        classes=CLASSES,
        colors=COLORS,
        scores=tuple(scores),
        num_probes=0,
        extra={"score_ranges": {"max_logit": [-12.0, 0.0]}},
    )
    helper.set_model_props(model, {META_KEY: meta.to_json()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def stamp(sec: int, nanosec: int = 0) -> Any:
    """A builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    return Time(sec=sec, nanosec=nanosec)


def raw_image_msg(rgb: np.ndarray, encoding: str, *, frame_id: str, sec: int, pad: int = 0) -> Any:
    """Encode RGB uint8 [H, W, 3] as a sensor_msgs/Image in ``encoding`` with ``pad`` bytes of row padding."""
    from sensor_msgs.msg import Image

    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[:, :, ::-1]
    elif encoding == "rgba8":
        pixels = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    elif encoding == "bgra8":
        pixels = np.concatenate([rgb[:, :, ::-1], np.full((*rgb.shape[:2], 1), 7, np.uint8)], axis=2)
    elif encoding == "mono8":
        pixels = rgb[:, :, :1]
    else:
        raise ValueError(encoding)
    height, width, channels = pixels.shape
    rows = np.zeros((height, width * channels + pad), np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    rows[:, width * channels :] = 0xAB  # padding bytes that must never be read as pixels
    msg = Image()
    msg.header.stamp = stamp(sec)
    msg.header.frame_id = frame_id
    msg.height, msg.width, msg.encoding, msg.step = height, width, encoding, width * channels + pad
    msg.data = rows.tobytes()
    return msg


def scene_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB uint8 [H, W, 3] scene (blocks + gradient) so the test model gives several classes."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (-(-height // 16), -(-width // 16), 3), dtype=np.uint8)
    image = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:height, :width]
    ramp = np.linspace(0, 60, width, dtype=np.float32)[None, :, None]
    return np.clip(image.astype(np.float32) + ramp, 0, 255).astype(np.uint8)




def spin_until(node: Any, predicate: Any, timeout_s: float) -> bool:
    """Spin ``node`` until ``predicate()`` is true or ``timeout_s`` passes; returns the predicate's last value."""
    import rclpy

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return bool(predicate())
        rclpy.spin_once(node, timeout_sec=0.02)
    return True


def load_backend(model_path: Path, threads: int = 1) -> Any:
    """The backend the node uses, for reference outputs in the test process."""
    from moose_ros.backends import make_backend

    return make_backend("onnxruntime", str(model_path), threads=threads)


OUTPUT_SUFFIXES = ("segmentation", "segmentation/color", "anomaly", "anomaly/overlay", "anomaly/mask")


class Harness:
    """The test's own rclpy participant: publishes inputs, collects the node's outputs and diagnostics.

    ``outputs[(topic, stamp_ns)]`` = (message, receive time); ``diagnostics`` = list of DiagnosticArray.
    """

    def __init__(self, domain_id: int, node_name: str = "moose_tester") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.outputs: dict[tuple[str, int], tuple[Any, float]] = {}
        self.diagnostics: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)

    def subscribe_outputs(self, prefix: str = "/moose_node/", suffixes: tuple[str, ...] = OUTPUT_SUFFIXES) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        for suffix in suffixes:
            topic = prefix + suffix
            self.node.create_subscription(Image, topic, lambda m, t=topic: self._store(t, m), qos)

    def _store(self, topic: str, msg: Any) -> None:
        self.outputs[(topic, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec)] = (
            msg, time.monotonic())

    def publish(self, topic: str, msg: Any) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        if topic not in self._pubs:
            qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
            self._pubs[topic] = self.node.create_publisher(type(msg), topic, qos)
            self.spin_for(0.3)
        self._pubs[topic].publish(msg)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def spin_until(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                return bool(predicate())
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def wait_outputs(self, stamp_ns: int, prefix: str = "/moose_node/", suffixes: tuple[str, ...] = OUTPUT_SUFFIXES,
                     timeout_s: float = 15.0) -> dict[str, Any]:
        """suffix -> output message with this stamp (raises AssertionError on timeout)."""
        keys = [(prefix + s, stamp_ns) for s in suffixes]
        ok = self.spin_until(lambda: all(k in self.outputs for k in keys), timeout_s)
        missing = [k[0] for k in keys if k not in self.outputs]
        if not ok:
            raise AssertionError(f"outputs missing for stamp {stamp_ns}: {missing}")
        return {s: self.outputs[(prefix + s, stamp_ns)][0] for s in suffixes}

    def latest_diagnostics(self, name_part: str = "") -> dict[str, str]:
        """Key/values of the newest diagnostics status whose name contains ``name_part``."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if name_part in status.name:
                    return {kv.key: kv.value for kv in status.values} | {"_level": status.level,
                                                                         "_message": status.message}
        return {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def image_array(msg: Any) -> np.ndarray:
    """An output sensor_msgs/Image (mono8, rgb8, 32FC1) as numpy, decoded by the package's one image codec."""
    from moose_ros.image_codec import decode_raw

    return decode_raw(msg.data, msg.height, msg.width, msg.step, msg.encoding, big_endian=bool(msg.is_bigendian),
                      rgb=False, where="node output")
