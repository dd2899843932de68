"""FramePipeline without DDS: a decoded frame -> the node's output arrays, on a hand-built ONNX graph (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_ros_support import COLORS, load_backend, scene_image, tiny_fused_onnx

from moose_ros.errors import BackendError, ConfigError
from moose_ros.pipeline import OUTPUTS, FramePipeline, PipelineSettings
from moose_ros.resize import resize_bilinear, resize_nearest

SETTINGS = PipelineSettings(score="max_logit", mask_score="msp", threshold=-0.5, value_range=(-8.0, 0.0),
                            overlay_alpha=0.6, colormap="turbo")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory):
    path = tiny_fused_onnx(tmp_path_factory.mktemp("pipeline") / "tiny.onnx", depth=1)
    backend = load_backend(path)
    yield backend
    backend.close()


def test_every_output_from_one_inference(backend) -> None:
    rgb = scene_image(48, 64, seed=2)
    frame = FramePipeline(backend, SETTINGS).run(rgb, OUTPUTS)
    reference = backend.infer(rgb[None])
    assert sorted(frame.arrays) == sorted(OUTPUTS) and frame.size == (48, 64) and frame.infer_ms > 0
    a = frame.arrays
    np.testing.assert_array_equal(a["segmentation"], reference.labels[0])
    np.testing.assert_allclose(a["anomaly"], reference.anomaly[0])
    assert a["mask"].dtype == np.uint8 and set(np.unique(a["mask"])) <= {0, 255}
    np.testing.assert_array_equal(a["mask"] == 255, reference.score("msp")[0] > SETTINGS.threshold)
    assert 0 < (a["mask"] == 255).mean() < 1, "threshold should split the test frame"
    np.testing.assert_array_equal(a["color"], np.asarray(COLORS, np.uint8)[reference.labels[0]])
    assert a["overlay"].shape == (48, 64, 3) and np.abs(a["overlay"].astype(int) - rgb).max() > 0
    assert len(np.unique(a["segmentation"])) > 1


def test_only_the_wanted_outputs_and_the_output_size(backend) -> None:
    rgb = scene_image(48, 64, seed=3)
    settings = PipelineSettings(score="msp", mask_score="msp", threshold=-0.5, output_size=(24, 40))
    frame = FramePipeline(backend, settings).run(rgb, {"segmentation", "anomaly"})
    reference = backend.infer(rgb[None])
    assert sorted(frame.arrays) == ["anomaly", "segmentation"] and frame.size == (24, 40)
    np.testing.assert_array_equal(frame.arrays["segmentation"], resize_nearest(reference.labels[0], 24, 40))
    np.testing.assert_allclose(frame.arrays["anomaly"], resize_bilinear(reference.score("msp")[0], 24, 40))
    assert FramePipeline(backend, settings).run(rgb, ()).arrays == {}


def test_new_settings_apply_to_the_next_frame(backend) -> None:
    rgb = scene_image(48, 64, seed=4)
    pipeline = FramePipeline(backend, SETTINGS)
    before = pipeline.run(rgb, {"mask"}).arrays["mask"]
    pipeline.settings = PipelineSettings(score="max_logit", mask_score="msp", threshold=0.0)
    after = pipeline.run(rgb, {"mask"}).arrays["mask"]
    assert (before == 255).any() and not (after == 255).any()  # -msp <= 0 everywhere: nothing passes 0


def test_bad_settings_and_frames_are_named(backend, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"score\(s\) \['entropy'\] are not outputs of the model; it exports "
                                          r"max_logit, msp"):
        FramePipeline(backend, PipelineSettings(score="entropy", mask_score="msp", threshold=0.0))
    pipeline = FramePipeline(backend, SETTINGS)
    with pytest.raises(ConfigError, match="colormap"):
        pipeline.settings = PipelineSettings(score="msp", mask_score="msp", threshold=0.0, colormap="rainbow")
    assert pipeline.settings == SETTINGS  # a refused change leaves the old settings
    with pytest.raises(ConfigError, match=r"unknown output\(s\) \['depth'\]"):
        pipeline.run(scene_image(8, 8), {"depth"})
    with pytest.raises(BackendError, match="uint8"):
        pipeline.run(np.zeros((8, 8, 3), np.float32), {"anomaly"})
