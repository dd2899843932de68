"""moose_node start-up: bad parameters stop it with the parameter's name; several cameras share one backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_ros_support import (
    Harness,
    image_array,
    load_backend,
    raw_image_msg,
    scene_image,
    tiny_fused_onnx,
)

from moose_ros.ros import launcher
from moose_ros.ros.conversions import resize_bilinear, resize_nearest

pytestmark = pytest.mark.ros


def _run_to_exit(params: dict, env: dict[str, str], log_path: Path, timeout_s: float = 60.0) -> tuple[int, str]:
    proc = launcher.start_node(params, env=env, log_path=log_path)
    try:
        code = proc.wait(timeout=timeout_s)
    finally:
        launcher.stop(proc)
    return code, log_path.read_text(errors="replace")


@pytest.mark.parametrize(
    ("params", "needles"),
    [
        ({"overlay_alpha": 3.0}, ["'overlay_alpha'", "[0.0, 1.0]"]),
        ({"colormap": "rainbow", "threshold": 1}, ["'colormap'", "turbo"]),
        ({"treshold": 1.0}, ["'treshold'", "threshold"]),
        ({"score": "entropy"}, ["'score'", "max_logit, msp"]),
        ({"model": "/nonexistent/model.onnx"}, ["/nonexistent/model.onnx", "does not exist"]),
    ],
)
def test_bad_parameters_stop_start_up(
    tmp_path: Path, ros_env: dict[str, str], params: dict, needles: list[str]
) -> None:
    params = {"model": str(tiny_fused_onnx(tmp_path / "tiny.onnx"))} | params
    code, log = _run_to_exit(params, ros_env, tmp_path / "node.log")
    assert code == 2, log
    for needle in needles:
        assert needle in log, log


def test_empty_model_without_bundled_model_says_so(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """An install whose share/moose_ros lacks the bundled model: empty ``model`` stops start-up with advice."""
    import shutil

    from moose_ros.resources import share_dir

    share = tmp_path / "prefix" / "share" / "moose_ros"
    shutil.copytree(share_dir() / "config", share / "config")
    shutil.copy2(share_dir() / "package.xml", share / "package.xml")
    (share / "models").mkdir()
    env = dict(ros_env, AMENT_PREFIX_PATH=str(tmp_path / "prefix"))
    code, log = _run_to_exit({"model": ""}, env, tmp_path / "node.log")
    assert code == 2 and "bundled model" in log and "model:=" in log, log


def test_two_cameras_one_backend_and_output_size(tmp_path: Path, ros_domain: int, ros_env: dict[str, str]) -> None:
    model = tiny_fused_onnx(tmp_path / "tiny.onnx")
    log_path = tmp_path / "node.log"
    params = {"model": str(model), "threads": 1, "cameras": ["front", "rear"], "output_size": [24, 30],
              "publish_overlay": False, "input_reliability": "reliable", "input_depth": 2}
    remap = ("-r", "front/image:=/drive/front_raw", "-p", "use_sim_time:=false")
    proc = launcher.start_node(params, env=ros_env, log_path=log_path, extra_args=remap)
    harness = Harness(ros_domain)
    try:
        suffixes = ("segmentation", "anomaly", "segmentation/color", "anomaly/mask")
        for cam in ("front", "rear"):
            harness.subscribe_outputs(f"/moose_node/{cam}/", suffixes)
        launcher.wait_for_topic(harness.node, "/moose_node/rear/anomaly", proc=proc, log_path=log_path,
                                executor=harness.executor)
        assert harness.node.count_publishers("/moose_node/front/anomaly/overlay") == 0  # publish_overlay: false
        backend = load_backend(model)
        for sec, cam in enumerate(("front", "rear"), start=10):
            rgb = scene_image(48, 64, seed=sec)
            topic = "/drive/front_raw" if cam == "front" else f"{cam}/image"  # remapped on the command line
            harness.publish(topic, raw_image_msg(rgb, "bgr8", frame_id=cam, sec=sec))
            outs = harness.wait_outputs(sec * 1_000_000_000, prefix=f"/moose_node/{cam}/", suffixes=suffixes)
            ref = backend.infer(rgb[None])
            for msg in outs.values():
                assert (msg.height, msg.width, msg.header.frame_id) == (24, 30, cam)
            np.testing.assert_array_equal(image_array(outs["segmentation"]), resize_nearest(ref.labels[0], 24, 30))
            np.testing.assert_allclose(image_array(outs["anomaly"]), resize_bilinear(ref.anomaly[0], 24, 30),
                                       atol=1e-5)
        diag = {cam: harness.latest_diagnostics(f": {cam}") for cam in ("front", "rear")}
        assert harness.spin_until(lambda: all(harness.latest_diagnostics(f": {c}").get("processed") == "1"
                                              for c in ("front", "rear")), 5.0), diag
    finally:
        harness.close()
        assert launcher.stop(proc) == 0, launcher.log_tail(log_path)


def test_pickled_code_model_is_refused_in_one_line(tmp_path: Path, ros_env: dict[str, str]) -> None:
    """`-p model:=evil.pt` holding pickled code: nothing runs, exit 2, the refusal in one line, no traceback."""
    from test_bad_input_common import Exploit

    torch = pytest.importorskip("torch")  # writes the file; the node itself refuses it
    torch.save({"format": "moose_ros.checkpoint", "hook": Exploit()}, tmp_path / "evil.pt")
    code, log = _run_to_exit({"model": str(tmp_path / "evil.pt")}, dict(ros_env, PWD=str(tmp_path)),
                             tmp_path / "node.log")
    assert code == 2 and "refused to load" in log and "Traceback" not in log, log
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
