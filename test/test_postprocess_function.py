"""``postprocess``: the one post-processing function, against numpy references, and through ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from test_export_fused import SCORES, random_images, tiny_model

from moose_ros import scoring
from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.errors import ConfigError
from moose_ros.export import FusedMoose, export_onnx
from moose_ros.export.postprocess import SmlStats, class_argmax, postprocess, score_maps

pytestmark = pytest.mark.usefixtures("torch_threads")


def _heads(m: int = 3, c: int = 6, h: int = 7, w: int = 9, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [2.0 * torch.randn(2, c, h, w, generator=gen) for _ in range(m)]


def _up(x: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False).numpy().astype(np.float64)


def test_exact_mode_equals_numpy_scores_of_upsampled_heads() -> None:
    heads, size = _heads(), (20, 31)
    labels, maps = postprocess(heads, size, scores=SCORES, work_size="output")
    ups = [_up(h, size) for h in heads]
    np.testing.assert_array_equal(labels.numpy(), ups[0].argmax(axis=1))
    assert labels.dtype == torch.uint8 and list(maps) == list(SCORES)
    for name in SCORES:
        want = scoring.compute_score(name, ups)  # the numpy path of the scoring module
        np.testing.assert_allclose(maps[name].numpy(), want, atol=2e-5, rtol=1e-5, err_msg=name)


def test_work_resolution_computes_there_then_resizes_single_channel_maps() -> None:
    heads, work, size = _heads(), (14, 18), (42, 54)
    labels, maps = postprocess(heads, size, scores=("max_logit", "entropy"), work_size=work)
    ups = [_up(h, work) for h in heads]
    # Labels: arg-max at the work size, then nearest neighbour with pixel-centre alignment.
    at_work = ups[0].argmax(axis=1)
    rows = np.floor((np.arange(size[0]) + 0.5) * work[0] / size[0]).astype(int)
    cols = np.floor((np.arange(size[1]) + 0.5) * work[1] / size[1]).astype(int)
    np.testing.assert_array_equal(labels.numpy(), at_work[:, rows][:, :, cols])
    # Scores: computed at the work size, then bilinear.
    for name in ("max_logit", "entropy"):
        at = torch.from_numpy(scoring.compute_score(name, ups)).float()[:, None]
        np.testing.assert_allclose(maps[name].numpy(), _up(at, size)[:, 0], atol=2e-5, err_msg=name)
    # At the output size the work path is the exact path.
    exact = postprocess(heads, work, scores=("entropy",), work_size="output")
    same = postprocess(heads, work, scores=("entropy",), work_size=work)
    np.testing.assert_array_equal(exact[0].numpy(), same[0].numpy())
    np.testing.assert_allclose(exact[1]["entropy"].numpy(), same[1]["entropy"].numpy(), atol=1e-6)


def test_scores_at_feature_resolution_labels_at_work_size() -> None:
    """``score_size="feature"`` (the graph default): every score from the heads as they are, bilinear to the work
    size, then to the output; labels from the global head upsampled to the work size."""
    heads, work, size = _heads(), (14, 18), (28, 36)
    names = ("max_logit", "entropy", "msp")
    labels, maps = postprocess(heads, size, scores=names, work_size=work, score_size="feature")
    reference, _ = postprocess(heads, size, scores=("max_logit",), work_size=work)
    np.testing.assert_array_equal(labels.numpy(), reference.numpy())  # labels as without score_size
    for name in names:
        at_heads = torch.from_numpy(scoring.compute_score(name, [h.numpy() for h in heads])).float()[:, None]
        want = _up(torch.from_numpy(_up(at_heads, work)).float(), size)[:, 0]
        np.testing.assert_allclose(maps[name].numpy(), want, atol=2e-5, err_msg=name)
    with pytest.raises(ConfigError, match="score_size"):
        postprocess(heads, size, work_size=work, score_size="input")


def test_feature_mode_and_labels_from_mean() -> None:
    heads, size = _heads(), (21, 27)
    labels, maps = postprocess(heads, size, scores=("msp",), work_size="feature", labels_from_mean=True)
    mean = sum(heads) / len(heads)
    feature_labels = mean.argmax(1).numpy()
    rows = np.floor((np.arange(size[0]) + 0.5) * 7 / size[0]).astype(int)
    cols = np.floor((np.arange(size[1]) + 0.5) * 9 / size[1]).astype(int)
    np.testing.assert_array_equal(labels.numpy(), feature_labels[:, rows][:, :, cols])
    at = score_maps(heads, ("msp",))["msp"][:, None]
    np.testing.assert_allclose(maps["msp"].numpy(), _up(at, size)[:, 0], atol=1e-6)


def test_class_argmax_matches_argmax_including_ties() -> None:
    x = torch.tensor([[3.0, 5.0, 5.0, 1.0], [2.0, 2.0, 2.0, 2.0]]).t().reshape(1, 4, 1, 2)
    np.testing.assert_array_equal(class_argmax(x)[:, 0].numpy(), [[[1.0, 0.0]]])
    heads = _heads(m=1, c=19, h=16, w=16, seed=3)
    np.testing.assert_array_equal(class_argmax(heads[0])[:, 0].numpy(), heads[0].argmax(1).numpy())


def test_sml_standardises_max_logit_by_the_predicted_class() -> None:
    heads = _heads(c=4)
    stats = SmlStats(mean=torch.tensor([1.0, 2.0, -1.0, 0.5]), std=torch.tensor([0.5, 2.0, 1.0, 4.0]))
    got = score_maps(heads, ("sml",), sml=stats)["sml"].numpy()
    mean = np.mean([h.numpy() for h in heads], axis=0).astype(np.float64)
    pred, top = mean.argmax(axis=1), mean.max(axis=1)
    want = -(top - stats.mean.numpy()[pred]) / stats.std.numpy()[pred]
    np.testing.assert_allclose(got, want, atol=1e-5)
    with pytest.raises(ConfigError, match="moose calibrate"):
        score_maps(heads, ("sml",))
    with pytest.raises(ConfigError, match="std > 0"):
        SmlStats.from_json({"mean": [0, 0, 0, 0], "std": [1, 0, 1, 1]}, 4)
    with pytest.raises(ConfigError, match="3 means"):
        SmlStats.from_json({"mean": [0, 0, 0], "std": [1, 1, 1]}, 4)


def test_fast_graph_matches_torch_in_onnxruntime_and_reduces_no_class_axis(tmp_path) -> None:
    """Input-resolution graph upsampling 3x: ORT == eager torch; no ArgMax/ReduceMax/Softmax node at all."""
    model = tiny_model()
    stats = SmlStats(mean=torch.linspace(-1, 1, 5), std=torch.linspace(0.5, 2, 5))
    fused = FusedMoose(model, scores=("max_logit", "entropy", "sml"), input_size=(64, 96), sml=stats)
    path = tmp_path / "fast.onnx"
    export_onnx(fused, path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"ArgMax", "ReduceMax", "Softmax", "ReduceSum"}
    images = random_images(1, 192, 288, seed=5)
    result = OnnxRuntimeBackend(path, threads=1).infer(images)
    with torch.no_grad():
        labels, *maps = fused(torch.from_numpy(images))
    assert (result.labels == labels.numpy()).mean() >= 0.999
    for got, want in zip([result.anomaly, *result.extra_scores.values()], maps, strict=True):
        assert np.abs(got - want.numpy()).max() <= 1e-3 * float(want.max() - want.min())
