"""The frame pipeline: a decoded camera frame -> the arrays the node publishes (numpy only, no rclpy, no torch).

:class:`FramePipeline` holds a backend and its :class:`PipelineSettings`; ``run(rgb, wanted)`` runs the fused
graph once and computes only the outputs asked for:

=================  ===============================================================================
``anomaly``        float32 [H, W]: the score ``settings.score``, bilinear at the output size
``segmentation``   uint8 [H, W]: class ids of the global head, nearest neighbour at the output size
``mask``           uint8 [H, W]: 255 where ``settings.mask_score`` > ``settings.threshold``, else 0
``color``          uint8 [H, W, 3]: the class ids in the model's palette
``overlay``        uint8 [H, W, 3]: the score as a heat map over the (resized) frame
=================  ===============================================================================

(H, W) is ``settings.output_size`` or the frame's own size. The node is message -> ``run`` -> messages; tests run
the same path without DDS. Settings change at run time by replacing :attr:`FramePipeline.settings` (one attribute
store: a frame sees the old settings or the new ones, never a mix).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from moose_ros.errors import ConfigError
from moose_ros.resize import resize_bilinear, resize_nearest
from moose_ros.visualize import (
    colorize_labels,
    colormap,
    normalize_scores,
    overlay_heatmap,
    palette_lut,
    threshold_mask,
)

__all__ = ["OUTPUTS", "FrameOutputs", "FramePipeline", "PipelineSettings"]

#: Every output :meth:`FramePipeline.run` can compute.
OUTPUTS = ("anomaly", "segmentation", "mask", "color", "overlay")
_NEEDS_LABELS = frozenset({"segmentation", "color"})
_NEEDS_SCORES = frozenset({"anomaly", "overlay", "mask"})


@dataclass(frozen=True)
class PipelineSettings:
    """What the pipeline does with the graph's outputs (resolved by the caller from its parameters and the model).

    Attributes:
        score: the exported score on ``anomaly`` and in the overlay.
        mask_score: the exported score ``mask`` thresholds (``score`` or its road-gated ``<score>_road``).
        threshold: the mask threshold in raw-score units.
        value_range: (lo, hi) of the overlay colour scale in raw-score units, or None (per-frame 1-99th percentiles).
        output_size: (H, W) of every output in pixels, or None (the frame's size).
        overlay_alpha: heat-map opacity in [0, 1].
        colormap: colour map name of :data:`moose_ros.visualize.COLORMAPS`.
    """

    score: str
    mask_score: str
    threshold: float
    value_range: tuple[float, float] | None = None
    output_size: tuple[int, int] | None = None
    overlay_alpha: float = 0.5
    colormap: str = "turbo"


class FrameOutputs(NamedTuple):
    """One frame's results: ``arrays`` (the wanted outputs by name), their ``size`` (H, W) and ``infer_ms``."""

    arrays: dict[str, np.ndarray]
    size: tuple[int, int]
    infer_ms: float


class FramePipeline:
    """A backend and what happens around it for one camera frame (see the module docstring).

    Args:
        backend: any :class:`~moose_ros.backends.base.Backend` (``infer`` and ``meta``).
        settings: the initial :class:`PipelineSettings`; the scores must be ones the model exports.
    """

    def __init__(self, backend: Any, settings: PipelineSettings) -> None:
        self.backend = backend
        self._palette = palette_lut(backend.meta.colors)
        self._exported = set(backend.meta.scores)
        self.settings = settings

    @property
    def settings(self) -> PipelineSettings:
        """The settings the next frame uses."""
        return self._settings

    @settings.setter
    def settings(self, value: PipelineSettings) -> None:
        missing = [s for s in (value.score, value.mask_score) if s not in self._exported]
        if missing:
            raise ConfigError(f"pipeline: score(s) {missing} are not outputs of the model; it exports "
                              f"{', '.join(self.backend.meta.scores)}")
        colormap(value.colormap)  # raises ConfigError naming the allowed maps
        self._settings = value

    def run(self, rgb: np.ndarray, wanted: Collection[str]) -> FrameOutputs:
        """Infer ``rgb`` uint8 [H, W, 3] and compute the ``wanted`` outputs (names of :data:`OUTPUTS`).

        Raises:
            ConfigError: an unknown output name.
            BackendError: the frame is not uint8 [H, W, 3] or inference failed.
        """
        wanted = set(wanted)
        unknown = sorted(wanted - set(OUTPUTS))
        if unknown:
            raise ConfigError(f"pipeline: unknown output(s) {unknown}; known: {', '.join(OUTPUTS)}")
        s = self._settings
        result = self.backend.infer(np.ascontiguousarray(rgb)[None])
        height, width = s.output_size or rgb.shape[:2]
        arrays: dict[str, np.ndarray] = {}
        if _NEEDS_LABELS & wanted:
            labels = resize_nearest(result.labels[0], height, width)
            if "segmentation" in wanted:
                arrays["segmentation"] = labels
            if "color" in wanted:
                arrays["color"] = colorize_labels(labels, self._palette)
        if _NEEDS_SCORES & wanted:
            scores = resize_bilinear(result.score(s.score)[0], height, width)
            if "anomaly" in wanted:
                arrays["anomaly"] = scores
            if "mask" in wanted:
                gated = scores if s.mask_score == s.score else resize_bilinear(
                    result.score(s.mask_score)[0], height, width)
                arrays["mask"] = threshold_mask(gated, s.threshold)
            if "overlay" in wanted:
                image = resize_bilinear(rgb, height, width)
                arrays["overlay"] = overlay_heatmap(image, normalize_scores(scores, s.value_range),
                                                    alpha=s.overlay_alpha, cmap=colormap(s.colormap))
        return FrameOutputs(arrays, (int(height), int(width)), float(result.timings_ms.get("infer", float("nan"))))
