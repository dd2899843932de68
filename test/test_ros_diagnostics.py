"""/diagnostics over DDS: a camera whose input stopped (or never started) goes STALE, a fed one is OK."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_ros_support import Harness, raw_image_msg, scene_image, tiny_fused_onnx

from moose_ros.ros import launcher

#: Seconds a node may take to come up (imports and model load take minutes on a starved CPU).
START_S = 240.0

pytestmark = pytest.mark.ros

OK, STALE = b"\x00", b"\x03"


def test_camera_without_input_goes_stale(tmp_path: Path, ros_domain: int, ros_env: dict[str, str]) -> None:
    log_path = tmp_path / "node.log"
    params = {"model": str(tiny_fused_onnx(tmp_path / "tiny.onnx")), "threads": 1, "cameras": ["front", "rear"],
              "diagnostics_period": 0.25, "input_timeout_s": 1.0, "warmup": False}
    proc = launcher.start_node(params, env=ros_env, log_path=log_path)
    tester = Harness(ros_domain)
    try:
        launcher.wait_for_topic(tester.node, "/moose_node/rear/anomaly", proc=proc, log_path=log_path,
                                executor=tester.executor, timeout_s=START_S, settle_s=0.5)
        frame = raw_image_msg(scene_image(16, 24), "rgb8", frame_id="front", sec=1)
        end = time.monotonic() + 2.0
        while time.monotonic() < end:  # feed front only, 10 Hz
            tester.publish("front/image", frame)
            tester.spin_for(0.1)
        front, rear = tester.latest_diagnostics(": front"), tester.latest_diagnostics(": rear")
        assert front["_level"] == OK and int(front["received"]) > 0, front
        assert rear["_level"] == STALE and rear["_message"].startswith("no input yet"), rear
        assert tester.spin_until(lambda: tester.latest_diagnostics(": front")["_level"] == STALE, 5.0)
        front = tester.latest_diagnostics(": front")
        assert front["_message"].startswith("no input for") and float(front["idle_s"]) >= 1.0, front
        tester.publish("front/image", frame)  # input back: OK again
        assert tester.spin_until(lambda: tester.latest_diagnostics(": front")["_level"] == OK, 5.0)
    finally:
        tester.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)
