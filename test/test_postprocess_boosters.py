"""Boundary suppression + dilated smoothing and the road gate, against plain numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moose_ros.errors import ConfigError
from moose_ros.export.postprocess import BoundarySuppression, postprocess, road_region, suppress_boundaries

pytestmark = pytest.mark.usefixtures("torch_threads")


def _window(a: np.ndarray, y: int, x: int, r: int) -> np.ndarray:
    return a[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1]


def _reference_suppression(score: np.ndarray, labels: np.ndarray, cfg: BoundarySuppression) -> np.ndarray:
    """Loops over pixels: the algorithm as the class docstring states it (one [h, w] map)."""
    h, w = score.shape
    boundary = np.array([[np.ptp(_window(labels, y, x, 1)) > 0 for x in range(w)] for y in range(h)])
    out = score.astype(np.float64)
    step = cfg.width // cfg.iterations
    for i in range(cfg.iterations):
        r = 0 if i == cfg.iterations - 1 else cfg.width - step * i - 1
        band = np.array([[_window(boundary, y, x, r).any() for x in range(w)] for y in range(h)])
        new = out.copy()
        for y, x in zip(*np.nonzero(band), strict=True):
            keep = ~_window(band, y, x, 1)
            if keep.any():
                new[y, x] = _window(out, y, x, 1)[keep].mean()
        out = new
    k, d = cfg.kernel, cfg.dilation
    ax = np.arange(k) - (k - 1) / 2
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / 2)
    smooth = np.zeros_like(out)
    for y in range(h):
        for x in range(w):
            total = norm = 0.0
            for i in range(k):
                for j in range(k):
                    yy, xx = y + d * (i - (k - 1) // 2), x + d * (j - (k - 1) // 2)
                    if 0 <= yy < h and 0 <= xx < w:
                        total += g[i, j] * out[yy, xx]
                        norm += g[i, j]
            smooth[y, x] = total / norm
    return smooth


def test_boundary_suppression_matches_reference_and_flattens_borders() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((14, 17))
    labels[:, 8:] = 1
    labels[3:6, 2:5] = 2
    score = rng.normal(size=labels.shape) + 3.0 * (np.abs(np.arange(17) - 7.5) < 1)[None]  # a glowing border
    cfg = BoundarySuppression(width=2, iterations=2, kernel=3, dilation=2)
    got = suppress_boundaries(torch.tensor(score)[None, None].float(), torch.tensor(labels)[None, None].float(), cfg)
    want = _reference_suppression(score, labels, cfg)
    np.testing.assert_allclose(got[0, 0].numpy(), want, atol=1e-4)
    border = got[0, 0, :, 7:9].mean().item()
    assert border < score[:, 7:9].mean() - 1.5  # the border glow is gone
    with pytest.raises(ConfigError, match="multiple of iterations"):
        BoundarySuppression(width=3, iterations=2)


def _reference_region(labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    road = np.isin(labels, classes)
    out = road.copy()
    for y, x in zip(*np.nonzero(~road), strict=True):
        out[y, x] = road[y, :x].any() and road[y, x:].any() and road[:y, x].any() and road[y:, x].any()
    return out


def test_road_region_fills_enclosed_holes_only() -> None:
    labels = np.full((12, 16), 10.0)  # sky / building
    labels[5:, 2:14] = 0  # road
    labels[7:9, 6:9] = 13  # a car on the road: enclosed -> filled
    labels[9:, 0:2] = 1  # sidewalk, also drivable here
    labels[5:7, 12:14] = 10  # a bay open to the top -> stays out
    got = road_region(torch.tensor(labels)[None, None], (0, 1))[0, 0].numpy() > 0
    np.testing.assert_array_equal(got, _reference_region(labels, (0, 1)))
    assert got[7:9, 6:9].all() and not got[5:7, 12:14].any() and not got[:5].any()


def test_road_gated_scores_take_the_image_minimum_outside() -> None:
    gen = torch.Generator().manual_seed(1)
    heads = [torch.randn(1, 3, 8, 10, generator=gen)]
    labels, maps = postprocess(heads, (8, 10), scores=("max_logit",), work_size="output", road_classes=(0,))
    region = road_region(labels[:, None].float(), (0,))[0, 0].numpy() > 0
    raw, gated = maps["max_logit"][0].numpy(), maps["max_logit_road"][0].numpy()
    np.testing.assert_array_equal(gated[region], raw[region])
    np.testing.assert_allclose(gated[~region], raw.min())


def test_boosters_export_and_match_torch_in_onnxruntime(tmp_path) -> None:
    """Boundary suppression + road gate in the fused graph: TensorRT-checked export, ORT == eager torch."""
    from test_export_fused import random_images, tiny_model

    from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
    from moose_ros.export import FusedMoose, export_onnx

    fused = FusedMoose(
        tiny_model(), scores=("entropy",), input_size=(64, 96), boundary=BoundarySuppression(), road_classes=(0, 1)
    )
    assert fused.output_names == ["labels", "anomaly", "anomaly_entropy_road"]
    path = tmp_path / "boost.onnx"
    meta = export_onnx(fused, path)
    assert meta.scores == ("entropy", "entropy_road") and meta.extra["postprocess"]["road_classes"] == [0, 1]
    images = random_images(1, 128, 192, seed=7)
    result = OnnxRuntimeBackend(path, threads=1).infer(images)
    with torch.no_grad():
        _, raw, gated = (t.numpy() for t in fused(torch.from_numpy(images)))
    for got, want in ((result.anomaly, raw), (result.extra_scores["entropy_road"], gated)):
        assert np.abs(got - want).max() <= 1e-3 * float(np.ptp(want)) + 1e-5
