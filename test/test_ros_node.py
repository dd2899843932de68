"""moose_node over real DDS: one node process (loopback profile, own domain) serves every test in this module.

Inputs in every raw encoding (with and without row padding) and compressed (jpeg, png) must give all five outputs
with the input header; labels and scores must equal the backend's on the decoded image. Malformed inputs are
logged and counted without stopping the node; run-time parameter changes take effect or are refused with a reason.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from test_ros_support import Harness, image_array, load_backend, raw_image_msg, scene_image, stamp, tiny_fused_onnx

from moose_ros.dds import allocate_domain_id, loopback_env
from moose_ros.ros import launcher
from moose_ros.visualize import palette_lut

pytestmark = pytest.mark.ros

THRESHOLD = -3.0


class Session:
    def __init__(self, tester: Harness, proc: Any, log_path: Path, model: Path) -> None:
        self.tester, self.proc, self.log_path = tester, proc, log_path
        self.backend = load_backend(model)
        self.next_sec = 100

    def stamp_sec(self) -> int:
        self.next_sec += 1
        return self.next_sec

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("node")
    model = tiny_fused_onnx(tmp / "model.onnx")
    domain = allocate_domain_id()
    env = loopback_env(domain, log_dir=tmp / "ros_logs")
    log_path = tmp / "node.log"
    params = {"model": str(model), "threads": 1, "input_transport": "both", "threshold": THRESHOLD,
              "max_pixels": 1_000_000, "diagnostics_period": 0.5}
    proc = launcher.start_node(params, env=env, log_path=log_path)
    tester = Harness(domain)
    try:
        tester.subscribe_outputs()
        launcher.wait_for_topic(tester.node, "/moose_node/anomaly", proc=proc, log_path=log_path,
                                executor=tester.executor)
        yield Session(tester, proc, log_path, model)
    finally:
        tester.close()
        code = launcher.stop(proc)
        assert code == 0, launcher.log_tail(log_path)


def _check_outputs(s: Session, outs: dict[str, Any], rgb: np.ndarray, sec: int, frame_id: str) -> None:
    height, width = rgb.shape[:2]
    expected = {"segmentation": "mono8", "segmentation/color": "rgb8", "anomaly": "32FC1",
                "anomaly/overlay": "rgb8", "anomaly/mask": "mono8"}
    for suffix, msg in outs.items():
        assert (msg.header.stamp.sec, msg.header.frame_id) == (sec, frame_id), suffix
        assert (msg.height, msg.width, msg.encoding) == (height, width, expected[suffix]), suffix
    ref = s.backend.infer(rgb[None])
    labels = image_array(outs["segmentation"])
    np.testing.assert_array_equal(labels, ref.labels[0])
    scores = image_array(outs["anomaly"])
    np.testing.assert_allclose(scores, ref.anomaly[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(image_array(outs["anomaly/mask"]), np.where(scores > THRESHOLD, 255, 0))
    np.testing.assert_array_equal(image_array(outs["segmentation/color"]), palette_lut(s.backend.meta.colors)[labels])
    overlay = image_array(outs["anomaly/overlay"])
    assert np.abs(overlay.astype(int) - rgb.astype(int)).max() > 0  # the heatmap is blended in


@pytest.mark.parametrize(
    ("encoding", "pad", "size"),
    [("rgb8", 0, (48, 64)), ("bgr8", 0, (48, 64)), ("rgba8", 0, (40, 56)), ("bgra8", 0, (40, 56)),
     ("mono8", 0, (48, 64)), ("rgb8", 7, (37, 51)), ("bgra8", 12, (33, 45))],
)
def test_raw_encodings_give_all_outputs(session: Session, encoding: str, pad: int, size: tuple[int, int]) -> None:
    rgb = scene_image(*size, seed=size[0] + pad)
    sec = session.stamp_sec()
    session.tester.publish("image", raw_image_msg(rgb, encoding, frame_id=f"cam_{encoding}", sec=sec, pad=pad))
    outs = session.tester.wait_outputs(sec * 1_000_000_000)
    decoded = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    _check_outputs(session, outs, decoded, sec, f"cam_{encoding}")


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
def test_compressed_inputs_give_all_outputs(session: Session, fmt: str) -> None:
    from sensor_msgs.msg import CompressedImage

    rgb = scene_image(48, 80, seed=9)
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format=fmt.upper())
    sec = session.stamp_sec()
    msg = CompressedImage(format=fmt, data=buf.getvalue())
    msg.header.stamp, msg.header.frame_id = stamp(sec), "cam_compressed"
    session.tester.publish("image/compressed", msg)
    outs = session.tester.wait_outputs(sec * 1_000_000_000)
    decoded = np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    _check_outputs(session, outs, decoded, sec, "cam_compressed")


def _rejected(s: Session) -> int:
    return int(s.tester.latest_diagnostics("moose_node").get("rejected", "-1"))


def test_malformed_inputs_are_logged_counted_and_survived(session: Session) -> None:
    from sensor_msgs.msg import CompressedImage, Image

    t = session.tester
    assert t.spin_until(lambda: _rejected(session) >= 0, 5.0)
    before = _rejected(session)
    good = raw_image_msg(scene_image(16, 24), "rgb8", frame_id="cam", sec=1)

    def bad_raw(**fields: Any) -> Image:
        msg = Image(height=good.height, width=good.width, step=good.step, encoding="rgb8", data=good.data)
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    buf = io.BytesIO()
    PILImage.fromarray(scene_image(32, 32)).save(buf, format="JPEG")
    cases = [
        ("image", bad_raw(encoding="yuv422"), r"unsupported encoding 'yuv422'"),
        ("image", bad_raw(data=bytes(good.data)[:100]), r"data has 100 bytes"),
        ("image", bad_raw(width=0, step=0), r"empty image 0x16"),
        ("image/compressed", CompressedImage(format="jpeg", data=buf.getvalue()[:300]), r"cannot decode"),
        ("image", bad_raw(height=100_000, width=100_000, step=300_000), r"exceeds max_pixels=1000000"),
    ]
    for topic, msg, pattern in cases:
        t.publish(topic, msg)
        t.spin_until(lambda p=pattern: re.search(p, session.log()) is not None, 10.0)
        # the node keeps running and serves the next good frame
        sec = session.stamp_sec()
        good.header.stamp = stamp(sec)
        t.publish("image", good)
        t.wait_outputs(sec * 1_000_000_000)
        lines = [line for line in session.log().splitlines() if re.search(pattern, line)]
        assert len(lines) == 1 and "rejected a frame on 'image'" in lines[0], (pattern, lines)
    assert t.spin_until(lambda: _rejected(session) == before + len(cases), 5.0), t.latest_diagnostics()
    assert session.proc.poll() is None


def _set(t: Harness, **values: Any) -> list[Any]:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = t.node.create_client(SetParameters, "/moose_node/set_parameters")
    assert t.spin_until(client.service_is_ready, 10.0)
    request = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    future = client.call_async(request)
    assert t.spin_until(future.done, 10.0)
    t.node.destroy_client(client)
    return list(future.result().results)


def test_threshold_changes_at_run_time(session: Session) -> None:
    t = session.tester
    rgb = scene_image(48, 64, seed=4)
    scores = session.backend.infer(rgb[None]).anomaly[0]
    masks = []
    for threshold in (float(np.percentile(scores, 30)), float(np.percentile(scores, 80))):
        (result,) = _set(t, threshold=threshold)
        assert result.successful, result.reason
        sec = session.stamp_sec()
        t.publish("image", raw_image_msg(rgb, "rgb8", frame_id="cam", sec=sec))
        outs = t.wait_outputs(sec * 1_000_000_000)
        mask = image_array(outs["anomaly/mask"])
        np.testing.assert_array_equal(mask, np.where(image_array(outs["anomaly"]) > threshold, 255, 0))
        masks.append(mask)
    assert (masks[0] == 255).sum() > (masks[1] == 255).sum() > 0
    (alpha, cmap) = _set(t, overlay_alpha=0.0, colormap="jet")
    assert alpha.successful and cmap.successful
    sec = session.stamp_sec()
    t.publish("image", raw_image_msg(rgb, "rgb8", frame_id="cam", sec=sec))
    np.testing.assert_array_equal(image_array(t.wait_outputs(sec * 1_000_000_000)["anomaly/overlay"]), rgb)
    (bad,) = _set(t, overlay_alpha=2.0)
    assert not bad.successful and "overlay_alpha" in bad.reason and "1.0" in bad.reason  # the descriptor range
    (fixed,) = _set(t, backend="torch")
    assert not fixed.successful and fixed.reason
    (restore, restore_alpha) = _set(t, threshold=THRESHOLD, overlay_alpha=0.5)
    assert restore.successful and restore_alpha.successful
