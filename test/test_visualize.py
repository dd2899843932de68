"""moose_ros.visualize: palettes, colour maps, score normalisation, overlays, masks (numpy only)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from moose_ros import visualize as vis
from moose_ros.errors import ConfigError


def test_imports_without_torch_and_rclpy() -> None:
    code = "import sys, moose_ros.visualize; print('torch' in sys.modules, 'rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_colorize_labels_uses_palette_and_black_void() -> None:
    colors = [(10, 20, 30), (200, 100, 0), (1, 2, 3)]
    labels = np.array([[0, 1, 2], [255, 7, 1]], np.uint8)
    rgb = vis.colorize_labels(labels, colors)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0], colors)
    np.testing.assert_array_equal(rgb[1], [(0, 0, 0), (0, 0, 0), (200, 100, 0)])
    np.testing.assert_array_equal(vis.colorize_labels(labels, vis.palette_lut(colors)), rgb)


@pytest.mark.parametrize("name", ["turbo", "inferno"])
def test_colormaps_match_reference_tables(name: str) -> None:
    import matplotlib

    reference = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255.0
    lut = vis.colormap(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert np.abs(lut.astype(float) - reference).max() < 0.035 * 255  # 17 anchors, linear in between


def test_jet_ramp() -> None:
    jet = vis.colormap("jet")
    np.testing.assert_array_equal(jet[0], (0, 0, 128))  # dark blue
    np.testing.assert_array_equal(jet[-1], (128, 0, 0))  # dark red
    assert tuple(int(v) for v in jet[128]) == pytest.approx((130, 255, 125), abs=2)  # green in the middle
    with pytest.raises(ConfigError, match="turbo"):
        vis.colormap("rainbow")


def test_normalize_scores_fixed_and_percentile() -> None:
    scores = np.array([[-10.0, -5.0], [0.0, 5.0]], np.float32)
    np.testing.assert_allclose(vis.normalize_scores(scores, (-10.0, 0.0)), [[0.0, 0.5], [1.0, 1.0]])
    ramp = np.linspace(0, 100, 101 * 50, dtype=np.float32).reshape(101, 50)
    auto = vis.normalize_scores(ramp)
    assert auto.min() == 0.0 and auto.max() == 1.0
    assert 0.45 < float(auto[50, 25]) < 0.55
    const = vis.normalize_scores(np.full((4, 4), 3.0, np.float32))
    np.testing.assert_array_equal(const, 0.0)
    with_nan = vis.normalize_scores(np.array([[np.nan, 1.0], [2.0, 3.0]], np.float32), (0.0, 4.0))
    np.testing.assert_allclose(with_nan, [[0.0, 0.25], [0.5, 0.75]])


def test_display_range_precedence() -> None:
    extra = {"score_ranges": {"max_logit": [-12.0, 0.0]}}
    assert vis.display_range("max_logit", extra) == (-12.0, 0.0)
    assert vis.display_range("max_logit", extra, (1.0, 2.0)) == (1.0, 2.0)
    assert vis.display_range("entropy", extra) is None
    assert vis.display_range("max_logit", {}, None) is None


def test_overlay_blends_with_alpha() -> None:
    image = np.full((2, 3, 3), 200, np.uint8)
    norm = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], np.float32)
    heat = vis.scores_to_rgb(norm, "inferno")
    np.testing.assert_array_equal(vis.overlay_heatmap(image, norm, alpha=0.0, cmap="inferno"), image)
    np.testing.assert_array_equal(vis.overlay_heatmap(image, norm, alpha=1.0, cmap="inferno"), heat)
    half = vis.overlay_heatmap(image, norm, alpha=0.3, cmap="inferno").astype(float)
    exact = 0.7 * image + 0.3 * heat
    assert np.abs(half - exact).max() <= 1.0
    with pytest.raises(ConfigError):
        vis.overlay_heatmap(image, norm, alpha=1.5)
    with pytest.raises(ConfigError, match="differ"):
        vis.overlay_heatmap(image, norm[:1], alpha=0.5)


def test_threshold_mask() -> None:
    scores = np.array([[-1.0, 0.0, 0.5]], np.float32)
    np.testing.assert_array_equal(vis.threshold_mask(scores, 0.0), [[0, 0, 255]])
    assert vis.threshold_mask(scores, -2.0).dtype == np.uint8
