"""camera_info beside image: matched by stamp, republished on ~/camera_info scaled to the output size (over DDS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_ros_support import Harness, raw_image_msg, scene_image, stamp, tiny_fused_onnx

from moose_ros.ros import launcher

#: Seconds a node may take to come up (imports and model load take minutes on a starved CPU).
START_S = 240.0

pytestmark = pytest.mark.ros

K = [500.0, 0.0, 32.0, 0.0, 480.0, 24.0, 0.0, 0.0, 1.0]
P = [500.0, 0.0, 32.0, -25.0, 0.0, 480.0, 24.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def _info(sec: int, fx: float) -> Any:
    from sensor_msgs.msg import CameraInfo

    msg = CameraInfo(height=48, width=64, distortion_model="plumb_bob", d=[0.1, -0.2, 0.0, 0.0, 0.01])
    msg.k = [fx, *K[1:]]
    msg.p = [fx, *P[1:]]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.header.stamp, msg.header.frame_id = stamp(sec), "camera_optical"
    return msg


def test_camera_info_scaled_to_output_size(tmp_path: Path, ros_domain: int, ros_env: dict[str, str]) -> None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo

    log_path = tmp_path / "node.log"
    params = {"model": str(tiny_fused_onnx(tmp_path / "tiny.onnx")), "threads": 1, "output_size": [24, 40],
              "warmup": False}
    proc = launcher.start_node(params, env=ros_env, log_path=log_path)
    tester = Harness(ros_domain)
    received: dict[int, Any] = {}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    tester.node.create_subscription(CameraInfo, "/moose_node/camera_info",
                                    lambda m: received.__setitem__(m.header.stamp.sec, m), qos)
    try:
        tester.subscribe_outputs(suffixes=("anomaly",))
        launcher.wait_for_topic(tester.node, "/moose_node/camera_info", proc=proc, log_path=log_path,
                                executor=tester.executor, timeout_s=START_S)
        tester.publish("camera_info", _info(10, fx=700.0))  # creates the publisher; may go before discovery
        assert tester.spin_until(lambda: tester._pubs["camera_info"].get_subscription_count() > 0, 10.0)
        tester.spin_for(0.5)
        tester.publish("camera_info", _info(11, fx=500.0))
        tester.publish("camera_info", _info(12, fx=600.0))  # newer, but not this frame's stamp
        tester.spin_for(0.3)
        tester.publish("image", raw_image_msg(scene_image(48, 64), "rgb8", frame_id="cam_front", sec=11))
        assert tester.spin_until(lambda: 11 in received, 15.0), launcher.log_tail(log_path)
        # malformed camera_info: counted and logged, never forwarded (frame 13 gets the newest VALID one, fx=600)
        empty = _info(13, fx=800.0)
        empty.width = empty.height = 0
        nan_k = _info(14, fx=900.0)
        nan_k.k = [float("nan"), *K[1:]]
        tester.publish("camera_info", empty)
        tester.publish("camera_info", nan_k)
        tester.spin_for(0.3)
        tester.publish("image", raw_image_msg(scene_image(48, 64), "rgb8", frame_id="cam_front", sec=13))
        assert tester.spin_until(lambda: 13 in received, 15.0), launcher.log_tail(log_path)
        assert tester.spin_until(lambda: int(tester.latest_diagnostics().get("rejected", 0)) >= 2, 10.0), \
            tester.latest_diagnostics()
    finally:
        tester.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)
    out = received[11]
    assert (out.header.stamp.sec, out.header.frame_id) == (11, "cam_front")  # the outputs' header
    assert (out.height, out.width) == (24, 40)
    sx, sy = 40 / 64, 24 / 48
    assert list(out.k) == pytest.approx([500.0 * sx, 0, 32.0 * sx, 0, 480.0 * sy, 24.0 * sy, 0, 0, 1])
    assert list(out.p) == pytest.approx([500.0 * sx, 0, 32.0 * sx, -25.0 * sx, 0, 480.0 * sy, 24.0 * sy, 0, 0, 0,
                                         1, 0])
    assert list(out.d) == pytest.approx([0.1, -0.2, 0.0, 0.0, 0.01]) and out.distortion_model == "plumb_bob"
    bad = received[13]
    assert (bad.height, bad.width) == (24, 40) and bad.k[0] == pytest.approx(600.0 * sx)
    log = log_path.read_text()
    assert "rejected a message on 'camera_info': size 0x0 pixels" in log
    assert "rejected a message on 'camera_info': K holds non-finite values at [0]" in log
