"""The fused MOoSe graph: uint8 RGB images in, class ids and anomaly scores out (one torch module).

:class:`FusedMoose` is both the eager reference (the torch backend runs it) and what ``moose export`` traces to
ONNX. Layout, for an input ``image`` uint8 [N, H, W, 3]::

    Cast -> float, NHWC -> NCHW, x * 1/(255 std) - mean/std          (one Mul + Add, checkpoint mean/std)
    optional bilinear resize to ``input_size``
    network -> global logits [N, C, h, w] + K probe logits            (feature resolution)
    labels  = uint8 argmax_c upsample(global)                          (the GLOBAL head only)
    max_logit / energy: one upsample of the mean logits              (mean and bilinear upsampling commute)
    entropy / msp / mutual_information:
        score_resolution="feature": score map at feature resolution, then upsampled (fast, approximate)
        score_resolution="full":    every head upsampled, then the score (exact, K + 1 upsamples)

The score math is :mod:`moose_ros.scoring` (explicit exp/sum on 4-D tensors). Head fusion and scoring always run
in float32, also when the network runs in float16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from moose_ros.errors import ConfigError
from moose_ros.scoring import SCORE_NAMES, compute_score, mean_logits

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MEAN_LOGIT_SCORES",
    "SCORE_RESOLUTIONS",
    "FusedEnsemble",
    "FusedMoose",
    "output_names",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Scores that depend on the mean logits only: exact with a single upsample of the mean.
MEAN_LOGIT_SCORES = ("max_logit", "energy")
SCORE_RESOLUTIONS = ("feature", "full")
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


def _check_scores(scores: Sequence[str]) -> tuple[str, ...]:
    scores = tuple(scores)
    if not scores:
        raise ConfigError(f"scores: give at least one of {', '.join(SCORE_NAMES)}")
    for name in scores:
        if name not in SCORE_NAMES:
            raise ConfigError(f"score '{name}' is unknown; allowed values: {', '.join(SCORE_NAMES)}")
    if len(set(scores)) != len(scores):
        raise ConfigError(f"scores: each score at most once, got {list(scores)}")
    return scores


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
        scores: anomaly scores to output (names from :data:`moose_ros.scoring.SCORE_NAMES`); the first one is
            ``anomaly``, further ones ``anomaly_<name>``.
        input_size: (H, W) the image is resized to before the network, or None (native size).
        output_size: (H', W') of the outputs, or None (the input image's size).
        score_resolution: ``"feature"`` or ``"full"`` for the softmax-based scores (see module docstring).
        mean, std: RGB normalisation of images scaled to [0, 1] (from the checkpoint).
        heads: ``"moose"`` (global head + K probes) or ``"global"`` (global head alone; probes are not run).
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
        score_resolution: str = "feature",
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        heads: str = "moose",
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
        self.scores = _check_scores(scores)
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
    def num_probes(self) -> int:
        """K aggregated with the global head (0 for ``heads="global"``)."""
        return 0 if self.heads_mode == "global" else int(getattr(self.model, "num_probes", 0))

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] RGB -> normalised float [N, 3, h, w] (h, w = ``input_size`` or H, W).

        The cast is the first op on the uint8 input (TensorRT accepts uint8 only at Cast layers).
        """
        return self._normalise(image.to(self.scale.dtype).permute(0, 3, 1, 2))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale + self.shift
        if self.input_size is not None:
            x = _upsample(x, self.input_size)
        return x

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
        heads = self.head_logits(self._normalise(x))
        need_mean = self.labels_from_mean or any(name in MEAN_LOGIT_SCORES for name in self.scores)
        mean = (mean_logits(heads) if len(heads) > 1 else heads[0]) if need_mean else None
        # MOoSe never changes the segmentation: labels come from the global head (ensembles: the mean).
        label_source = mean if self.labels_from_mean and mean is not None else heads[0]
        label_up = _upsample(label_source, size)
        # int64 argmax -> float32 -> uint8: TensorRT casts to/from uint8 only from/to float32/float16.
        labels = label_up.argmax(dim=1).to(torch.float32).to(torch.uint8)

        results: dict[str, torch.Tensor] = {}
        if mean is not None and any(name in MEAN_LOGIT_SCORES for name in self.scores):
            mean_up = label_up if label_source is mean else _upsample(mean, size)
            for name in self.scores:
                if name in MEAN_LOGIT_SCORES:
                    results[name] = compute_score(name, mean_up)
        softmax_scores = [name for name in self.scores if name not in MEAN_LOGIT_SCORES]
        if softmax_scores and self.score_resolution == "feature":
            maps = torch.stack([compute_score(name, heads) for name in softmax_scores], dim=1)
            maps = _upsample(maps, size)
            for index, name in enumerate(softmax_scores):
                results[name] = maps[:, index]
        elif softmax_scores:
            ups = [label_up if h is label_source else _upsample(h, size) for h in heads]
            for name in softmax_scores:
                results[name] = compute_score(name, ups)
        return (labels, *(results[name].float() for name in self.scores))

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
