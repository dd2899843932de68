"""The fused MOoSe graph: uint8 RGB images in, class ids and anomaly scores out (one torch module).

:class:`FusedMoose` is both the eager reference (the torch backend runs it) and what ``moose export`` traces to
ONNX. Layout, for an input ``image`` uint8 [N, H, W, 3]::

    Cast -> float, NHWC -> NCHW
    optional bilinear resize to ``input_size``                          (before the normalisation: it commutes)
    x * 1/(255 std) - mean/std                                          (one Mul + Add, checkpoint mean/std)
    network -> global logits [N, C, h, w] + K probe logits              (feature resolution)
    postprocess(heads, output size)                                     (moose_ros.export.postprocess)

The post-processing is :func:`moose_ros.export.postprocess.postprocess`; ``score_resolution`` picks where it
computes labels and scores before only single-channel maps are upsampled to the output size:

    "feature" (default) scores at the heads' feature resolution, labels at the network input size (``input_size``,
              or the image's size when native): only the global head's logits are upsampled
    "input"   labels and scores at the network input size (every head a softmax score reads is upsampled)
    "full"    at the output size: every needed C-channel tensor upsampled there (exact, slow at camera sizes)

Labels are the GLOBAL head's arg-max (MOoSe never changes the segmentation); ensembles use the mean logits.
Head fusion and scoring always run in float32, also when the network runs in float16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from moose_ros.errors import ConfigError
from moose_ros.export.postprocess import (
    DEFAULT_RESOLUTION,
    MEAN_LOGIT_SCORES,
    SCORE_RESOLUTIONS,
    BoundarySuppression,
    SmlStats,
    check_scores,
    postprocess,
    resolution_sizes,
)
from moose_ros.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MEAN_LOGIT_SCORES",
    "SCORE_RESOLUTIONS",
    "FusedEnsemble",
    "FusedMoose",
    "output_names",
]

HEAD_MODES = ("moose", "global")


def output_names(scores: Sequence[str]) -> list[str]:
    """Graph output names for ``scores``: ``labels``, ``anomaly`` (scores[0]), ``anomaly_<name>`` for the rest."""
    return ["labels", "anomaly"] + [f"anomaly_{name}" for name in scores[1:]]


def _check_size(value: Sequence[int] | None, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{what} must be (H, W) in pixels or None, got {value!r}") from err
    if h < 1 or w < 1:
        raise ConfigError(f"{what} must be positive (H, W), got {value!r}")
    return h, w


def _upsample(x: torch.Tensor, size: Any) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _global_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The global head's logits without running the probes (``trunk_forward`` when the model has one)."""
    trunk_forward = getattr(model, "trunk_forward", None)
    if trunk_forward is not None:
        return trunk_forward(x)[0]
    return model(x)["out"]


class FusedMoose(nn.Module):
    """A MOoSe network with its pre- and post-processing: ``forward(image) -> (labels, anomaly, *extra)``.

    Args:
        model: ``model(x)`` -> ``{"out": [N, C, h, w], "probes": [K x [N, C, h, w]]}`` (moose_ros.model).
        scores: anomaly scores to output (names from :data:`moose_ros.export.postprocess.POSTPROCESS_SCORES`); the
            first one is ``anomaly``, further ones ``anomaly_<name>``.
        input_size: (H, W) the image is resized to before the network, or None (native size).
        output_size: (H', W') of the outputs, or None (the input image's size).
        score_resolution: ``"feature"``, ``"input"`` or ``"full"``: where labels and scores are computed (see the
            module docstring).
        mean, std: RGB normalisation of images scaled to [0, 1] (from the checkpoint).
        heads: ``"moose"`` (global head + K probes) or ``"global"`` (global head alone; probes are not run).
        sml: per-class max-logit statistics of the aggregated logits, required for the ``"sml"`` score.
        boundary: boundary suppression + dilated smoothing applied to every score, or None.
        road_classes: class ids of the drivable area; when given, every score is also output gated to the road
            region (holes filled) as ``anomaly_<score>_road`` (see :func:`~moose_ros.export.postprocess.postprocess`).
    """

    #: False: labels = argmax of the global head; True (ensembles): argmax of the mean logits.
    labels_from_mean = False

    def __init__(
        self,
        model: nn.Module,
        *,
        scores: Sequence[str] = ("max_logit",),
        input_size: Sequence[int] | None = None,
        output_size: Sequence[int] | None = None,
        score_resolution: str = DEFAULT_RESOLUTION,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        heads: str = "moose",
        sml: SmlStats | None = None,
        boundary: BoundarySuppression | None = None,
        road_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if score_resolution not in SCORE_RESOLUTIONS:
            raise ConfigError(
                f"score_resolution '{score_resolution}' is unknown; allowed values: {', '.join(SCORE_RESOLUTIONS)}"
            )
        if heads not in HEAD_MODES:
            raise ConfigError(f"heads '{heads}' is unknown; allowed values: {', '.join(HEAD_MODES)}")
        if len(mean) != 3 or len(std) != 3 or any(float(s) <= 0 for s in std):
            raise ConfigError(f"mean/std need 3 values each with std > 0, got {tuple(mean)} / {tuple(std)}")
        self.model = model
        self.base_scores = check_scores(scores, sml=sml)
        self.road_classes = None if road_classes is None else tuple(int(c) for c in road_classes)
        if self.road_classes is not None and not self.road_classes:
            raise ConfigError("road_classes: give at least one class id, or None for no road gate")
        gated = tuple(f"{name}_road" for name in self.base_scores) if self.road_classes is not None else ()
        #: Output scores: the computed ones, then their road-gated copies.
        self.scores = (*self.base_scores, *gated)
        self.sml = sml
        self.boundary = boundary
        self.input_size = _check_size(input_size, "input_size")
        self.output_size = _check_size(output_size, "output_size")
        self.score_resolution = score_resolution
        self.heads_mode = heads
        mean64 = torch.tensor([float(v) for v in mean], dtype=torch.float64)
        std64 = torch.tensor([float(v) for v in std], dtype=torch.float64)
        # (x / 255 - mean) / std == x * scale + shift, folded in float64 and stored as float32.
        self.register_buffer("scale", (1.0 / (255.0 * std64)).float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", (-mean64 / std64).float().view(1, 3, 1, 1), persistent=False)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)

    @property
    def output_names(self) -> list[str]:
        """Names of :meth:`forward`'s outputs, in order."""
        return output_names(self.scores)

    @property
    def postprocess_meta(self) -> dict[str, Any]:
        """The post-processing options, JSON data for the model meta."""
        return {
            "score_resolution": self.score_resolution,
            "boundary_suppression": None if self.boundary is None else dict(vars(self.boundary)),
            "road_classes": None if self.road_classes is None else list(self.road_classes),
            "sml": self.sml is not None,
        }

    @property
    def num_probes(self) -> int:
        """K aggregated with the global head (0 for ``heads="global"``)."""
        return 0 if self.heads_mode == "global" else int(getattr(self.model, "num_probes", 0))

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] RGB -> normalised float [N, 3, h, w] (h, w = ``input_size`` or H, W).

        The cast is the first op on the uint8 input (TensorRT accepts uint8 only at Cast layers).
        """
        return self._normalise(image.to(self.scale.dtype).permute(0, 3, 1, 2))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        # Resize first: bilinear resizing commutes with the per-channel affine normalisation, and the Mul + Add
        # then run on the network's input size instead of the camera's.
        if self.input_size is not None:
            x = _upsample(x, self.input_size)
        return x * self.scale + self.shift

    def head_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits float32 [N, C, h, w] at feature resolution: the global head first, then the probes."""
        if self.heads_mode == "global":
            return [_global_logits(self.model, x).float()]
        out = self.model(x)
        return [out["out"].float(), *(p.float() for p in out["probes"])]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Segment and score a batch.

        Args:
            image: uint8 [N, H, W, 3] RGB.

        Returns:
            ``labels`` uint8 [N, H', W'] then one float32 [N, H', W'] per score (order of ``scores``),
            (H', W') = ``output_size`` or (H, W).
        """
        x = image.to(self.scale.dtype).permute(0, 3, 1, 2)
        # Sizes are read from the float tensor: TensorRT lets nothing but Cast touch the uint8 input.
        size = self.output_size if self.output_size is not None else (x.shape[2], x.shape[3])
        x = self._normalise(x)
        labels, maps = self.postprocess_heads(self.head_logits(x), size, (x.shape[2], x.shape[3]))
        return (labels, *(maps[name] for name in self.scores))

    def postprocess_heads(
        self, heads: Sequence[torch.Tensor], size: Any, input_hw: Any, *, sml: SmlStats | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """This graph's post-processing of head logits computed elsewhere (offline evaluation of head subsets).

        Args:
            heads: logits float [N, C, h, w] (global head first).
            size: (H', W') of the outputs; input_hw: the network input's (H, W) (the default work size).
            sml: statistics for these heads, if they are not the graph's own head set (e.g. the global head alone).

        Returns:
            ``(labels uint8 [N, H', W'], {score: float32 [N, H', W']})`` for every name in :attr:`scores`.
        """
        work, score_size = resolution_sizes(self._resolution(), input_hw)
        return postprocess(
            heads,
            size,
            scores=self.base_scores,
            work_size=work,
            score_size=score_size,
            labels_from_mean=self.labels_from_mean,
            sml=sml if sml is not None else self.sml,
            boundary=self.boundary,
            road_classes=self.road_classes,
        )

    def _resolution(self) -> str:
        """``score_resolution``, except that a fixed output no larger than the network input is computed exactly
        (``"full"``): cheaper than working at the input size and then shrinking."""
        fixed = self.output_size is not None and self.input_size is not None
        if self.score_resolution == "input" and fixed and all(
            o <= i for o, i in zip(self.output_size, self.input_size, strict=True)
        ):
            return "full"
        return self.score_resolution

    def run(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`forward` with its outputs keyed by :attr:`output_names`."""
        return dict(zip(self.output_names, self.forward(image), strict=True))


class FusedEnsemble(FusedMoose):
    """A deep ensemble of M independent global models in one graph (the paper's baseline for MOoSe).

    Every member's global head is run (no probes); the heads are aggregated like MOoSe's; ``labels`` are the
    argmax of the mean logits (the ensemble's segmentation). Arguments as :class:`FusedMoose`.
    """

    labels_from_mean = True

    def __init__(self, members: Sequence[nn.Module], **kwargs: Any) -> None:
        if len(members) < 1:
            raise ConfigError("FusedEnsemble needs at least one member model")
        super().__init__(members[0], heads="global", **kwargs)
        self.members = nn.ModuleList(members)

    @property
    def num_probes(self) -> int:
        """M - 1: the members beyond the first play the role of MOoSe's probes in the aggregation."""
        return len(self.members) - 1

    def head_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's global logits float32 [N, C, h, w]."""
        return [_global_logits(member, x).float() for member in self.members]
