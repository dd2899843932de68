"""Managed mode (``managed: true``) driven through the lifecycle_msgs services over DDS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_ros_support import Harness, raw_image_msg, scene_image, tiny_fused_onnx

from moose_ros.ros import launcher

pytestmark = pytest.mark.ros


def _call(t: Harness, srv_type: Any, name: str, request: Any) -> Any:
    client = t.node.create_client(srv_type, name)
    assert t.spin_until(client.service_is_ready, 240.0), name  # the first call waits for the node to start
    future = client.call_async(request)
    assert t.spin_until(future.done, 60.0), name
    t.node.destroy_client(client)
    return future.result()


def _transition(t: Harness, transition_id: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    request = ChangeState.Request(transition=Transition(id=transition_id))
    return bool(_call(t, ChangeState, "/moose_node/change_state", request).success)


def _state(t: Harness) -> str:
    from lifecycle_msgs.srv import GetState

    return str(_call(t, GetState, "/moose_node/get_state", GetState.Request()).current_state.label)


def _answers(t: Harness, sec: int, timeout_s: float) -> bool:
    t.publish("image", raw_image_msg(scene_image(24, 32, seed=sec), "rgb8", frame_id="cam", sec=sec))
    return t.spin_until(lambda: ("/moose_node/anomaly", sec * 1_000_000_000) in t.outputs, timeout_s)


def test_lifecycle_transitions(tmp_path: Path, ros_domain: int, ros_env: dict[str, str]) -> None:
    from lifecycle_msgs.msg import Transition

    log_path = tmp_path / "node.log"
    params = {"model": str(tiny_fused_onnx(tmp_path / "tiny.onnx")), "threads": 1, "managed": True,
              "warmup": False}
    proc = launcher.start_node(params, env=ros_env, log_path=log_path)
    t = Harness(ros_domain)
    try:
        t.subscribe_outputs(suffixes=("anomaly",))
        assert _state(t) == "unconfigured"
        assert t.node.count_publishers("/moose_node/anomaly") == 0 and "ready" not in log_path.read_text()

        assert _transition(t, Transition.TRANSITION_CONFIGURE) and _state(t) == "inactive"
        assert t.spin_until(lambda: t.node.count_publishers("/moose_node/anomaly") == 1, 10.0)
        assert "ready: backend onnxruntime-cpu" in log_path.read_text()  # the model is loaded at configure
        assert t.node.count_subscribers("/image") == 0 and not _answers(t, 1, 1.5)

        assert _transition(t, Transition.TRANSITION_ACTIVATE) and _state(t) == "active"
        assert t.spin_until(lambda: t.node.count_subscribers("/image") == 1, 10.0)
        t.spin_for(0.5)
        assert _answers(t, 2, 15.0)

        assert _transition(t, Transition.TRANSITION_DEACTIVATE) and _state(t) == "inactive"
        assert t.spin_until(lambda: t.node.count_subscribers("/image") == 0, 10.0)
        assert not _answers(t, 3, 1.5)

        assert _transition(t, Transition.TRANSITION_CLEANUP) and _state(t) == "unconfigured"
        assert t.spin_until(lambda: t.node.count_publishers("/moose_node/anomaly") == 0, 10.0)
        assert "backend released" in log_path.read_text()

        assert _transition(t, Transition.TRANSITION_CONFIGURE)  # and again: the model loads a second time
        assert _transition(t, Transition.TRANSITION_ACTIVATE)
        assert t.spin_until(lambda: t.node.count_subscribers("/image") == 1, 10.0)
        t.spin_for(0.5)
        assert _answers(t, 4, 15.0)
    finally:
        t.close()
        assert launcher.stop(proc, timeout_s=30.0) == 0, launcher.log_tail(log_path)


def _set(t: Harness, name: str, value: Any) -> Any:
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    return _call(t, SetParameters, "/moose_node/set_parameters", request).results[0]


def test_failed_configure_is_fixed_by_setting_the_model(tmp_path: Path, ros_domain: int,
                                                        ros_env: dict[str, str]) -> None:
    """A configure that fails on a bad `model` is fixed with a parameter change and retried, no restart; once
    configured, `model` is refused with the reason (cleanup first), and after cleanup it is accepted again."""
    from lifecycle_msgs.msg import Transition

    log_path = tmp_path / "node.log"
    good = str(tiny_fused_onnx(tmp_path / "tiny.onnx"))
    (tmp_path / "not_a_model.onnx").write_text("not an onnx graph")
    params = {"model": str(tmp_path / "not_a_model.onnx"), "threads": 1, "managed": True, "warmup": False}
    proc = launcher.start_node(params, env=ros_env, log_path=log_path)
    t = Harness(ros_domain)
    try:
        t.subscribe_outputs(suffixes=("anomaly",))
        assert _state(t) == "unconfigured"
        assert not _transition(t, Transition.TRANSITION_CONFIGURE) and _state(t) == "unconfigured"
        assert "not_a_model.onnx" in log_path.read_text()

        bad_value = _set(t, "threads", -3)
        assert not bad_value.successful and "threads" in bad_value.reason  # still validated
        assert _set(t, "model", good).successful
        assert _transition(t, Transition.TRANSITION_CONFIGURE) and _state(t) == "inactive"
        assert _transition(t, Transition.TRANSITION_ACTIVATE)
        assert t.spin_until(lambda: t.node.count_subscribers("/image") == 1, 10.0)
        t.spin_for(0.5)
        assert _answers(t, 5, 15.0)

        refused = _set(t, "model", str(tmp_path / "not_a_model.onnx"))
        assert not refused.successful and "cleanup the managed node first" in refused.reason
        assert _set(t, "threshold", 1.5).successful  # run-time parameters still change while active
        assert _transition(t, Transition.TRANSITION_DEACTIVATE) and _transition(t, Transition.TRANSITION_CLEANUP)
        assert _set(t, "backend", "onnxruntime-cpu").successful
    finally:
        t.close()
        assert launcher.stop(proc, timeout_s=30.0) == 0, launcher.log_tail(log_path)
