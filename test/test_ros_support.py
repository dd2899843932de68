"""Shared helpers for the node tests (imported by test_ros_*.py; holds no tests itself).

``tiny_fused_onnx`` writes a small but real fused graph that honours the contract of
``moose_ros/backends/base.py``: input ``image`` uint8 [N, H, W, 3] RGB, outputs ``labels`` uint8 [N, H, W]
(argmax of a conv head), ``anomaly`` float32 (max-logit score, -max logit) and ``anomaly_msp`` (-max softmax),
``ModelMeta`` JSON in the metadata. ``depth`` stacks 3x3 convs to make it as slow as a test needs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.backends.base import META_KEY, ModelMeta

CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car")
COLORS = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180), (0, 0, 142))


def tiny_fused_onnx(path: Path, *, depth: int = 0, width: int = 16, seed: int = 0) -> Path:
    """Write the test graph to ``path`` (see module docstring) and return it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["image"], ["img_f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["img_f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Mul", ["nchw", "scale"], ["x0"]),
    ]
    inits = [numpy_helper.from_array(np.array(1.0 / 255.0, dtype=np.float32), "scale")]
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
        helper.make_node("ReduceMax", ["logits"], ["maxlogit"], axes=[1], keepdims=0),
        helper.make_node("Neg", ["maxlogit"], ["anomaly"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node("ReduceMax", ["probs"], ["maxprob"], axes=[1], keepdims=0),
        helper.make_node("Neg", ["maxprob"], ["anomaly_msp"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_fused_moose",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", "H", "W", 3])],
        [
            helper.make_tensor_value_info("labels", TensorProto.UINT8, ["N", "H", "W"]),
            helper.make_tensor_value_info("anomaly", TensorProto.FLOAT, ["N", "H", "W"]),
            helper.make_tensor_value_info("anomaly_msp", TensorProto.FLOAT, ["N", "H", "W"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMeta(
        architecture="tiny_test_graph",
        classes=CLASSES,
        colors=COLORS,
        scores=("max_logit", "msp"),
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
