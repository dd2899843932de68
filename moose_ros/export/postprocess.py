"""Post-processing of a segmentation network's heads: logits in, class ids and anomaly scores out.

:func:`postprocess` is the one implementation of this step. The fused graph (:class:`~moose_ros.export.FusedMoose`)
traces it into ONNX, and offline evaluation (``moose eval``, the OoD table, ``moose calibrate``) calls it on head
logits it computed itself, so offline numbers are the numbers of the deployed graph. It is a pure function of torch
tensors built from ops that export to ONNX opset 17 and that TensorRT parses.

Cost model (why the work resolution exists): upsampling C-channel logits of every head to camera resolution and
taking a C-way arg-max there costs several times the network itself. ``postprocess`` therefore computes labels at a
*work resolution* (the fused graph: the network's input size, e.g. 192x384) and upsamples only single-channel
results to the output size: scores bilinearly, labels with nearest neighbour. Scores may be computed at the heads'
own (feature) resolution (``score_size=WORK_FEATURE``): then no head but the label head is ever upsampled, every
softmax runs on the small maps, and MOoSe's K extra heads cost next to nothing after the network; the score maps
are upsampled to the work size before boundary suppression and the road gate. With ``work_size=WORK_OUTPUT``
everything is computed at the output size instead (exact; the reference the fast paths are measured against by
:mod:`moose_ros.bench.quality`). :func:`resolution_sizes` names the three settings the fused graph offers.

Scores (higher = more anomalous, float32): the names of :data:`moose_ros.scoring.SCORE_NAMES` plus ``"sml"``
(standardised max-logit, Jung et al. 2021: the max of the aggregated logits standardised by the mean and standard
deviation of the max logit of the predicted class, measured on training pixels by ``moose calibrate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from moose_ros.contract import DEFAULT_SCORE_RESOLUTION
from moose_ros.errors import ConfigError
from moose_ros.scoring import GRAPH_SCORES, compute_score, mean_logits

__all__ = [
    "DEFAULT_RESOLUTION",
    "MEAN_LOGIT_SCORES",
    "POSTPROCESS_SCORES",
    "SCORE_RESOLUTIONS",
    "WORK_FEATURE",
    "WORK_OUTPUT",
    "BoundarySuppression",
    "SmlStats",
    "check_scores",
    "class_argmax",
    "class_borders",
    "postprocess",
    "resolution_sizes",
    "road_region",
    "score_maps",
    "suppress_boundaries",
]

#: Scores that depend on the mean logits only (one C-channel tensor, whatever the number of heads).
MEAN_LOGIT_SCORES = ("max_logit", "energy", "sml")
#: Every score :func:`postprocess` computes (:data:`moose_ros.scoring.GRAPH_SCORES`).
POSTPROCESS_SCORES: tuple[str, ...] = GRAPH_SCORES
#: ``work_size`` value: compute at the heads' own (feature) resolution.
WORK_FEATURE = "feature"
#: ``work_size`` value: compute at the output size (exact; every C-channel head upsampled there).
WORK_OUTPUT = "output"

Size = Sequence[Any]  # (H, W) as ints or traced 0-d tensors

#: Where the fused graph computes (``score_resolution``): labels always at the network input size, except "full".
#:   "feature": scores at the heads' resolution, labels at the input size;
#:   "input":   labels and scores at the network input size;
#:   "full":    everything at the output size (exact).
SCORE_RESOLUTIONS = ("feature", "input", "full")
DEFAULT_RESOLUTION = DEFAULT_SCORE_RESOLUTION


def resolution_sizes(resolution: str, input_hw: Size) -> tuple[Size | str, str | None]:
    """``(work_size, score_size)`` arguments of :func:`postprocess` for a :data:`SCORE_RESOLUTIONS` name.

    ``input_hw``: the network input's (H, W) (ints or traced sizes).
    """
    if resolution == "feature":
        return input_hw, WORK_FEATURE
    if resolution == "input":
        return input_hw, None
    if resolution == "full":
        return WORK_OUTPUT, None
    raise ConfigError(f"score_resolution '{resolution}' is unknown; allowed values: {', '.join(SCORE_RESOLUTIONS)}")


@dataclass(frozen=True)
class SmlStats:
    """Per-class statistics of the max logit for standardised max-logit (``"sml"``).

    Attributes:
        mean, std: float32 [C] tensors: mean and standard deviation (> 0) of the max of the aggregated logits over
            training pixels predicted as each class.
    """

    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], num_classes: int, *, source: str = "sml") -> SmlStats:
        """``{"mean": [C floats], "std": [C floats]}`` (a checkpoint's ``calibration["sml"][<heads>]``)."""
        try:
            mean = torch.tensor([float(v) for v in entry["mean"]], dtype=torch.float32)
            std = torch.tensor([float(v) for v in entry["std"]], dtype=torch.float32)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: expected {{'mean': [C floats], 'std': [C floats]}}: {err}") from err
        if mean.numel() != num_classes or std.numel() != num_classes:
            raise ConfigError(f"{source}: {mean.numel()} means / {std.numel()} stds for {num_classes} classes")
        if not bool(torch.isfinite(mean).all()) or not bool((std > 0).all()):
            raise ConfigError(f"{source}: means must be finite and every std > 0")
        return cls(mean=mean, std=std)


@dataclass(frozen=True)
class BoundarySuppression:
    """Boundary suppression and dilated smoothing of score maps (Jung et al., ICCV 2021), in work-size pixels.

    Class borders of the predicted segmentation (pixels whose 3x3 neighbourhood holds another class) are widened
    to ``width`` pixels and then, in ``iterations`` steps with a shrinking band, each border pixel takes the mean
    of its non-border 3x3 neighbours (the band's interior is reached from outside in); finally a ``kernel`` x
    ``kernel`` Gaussian (sigma 1) with ``dilation`` smooths the map (0 = no smoothing). Zero padding with
    normalised weights at the image border. The paper's values are for 1024x2048 maps (width 4, 4 iterations,
    kernel 7, dilation 6); the defaults here are scaled to a ~192x384 network input.
    """

    width: int = 2
    iterations: int = 2
    kernel: int = 7
    dilation: int = 2

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.width < self.iterations or self.width % self.iterations:
            raise ConfigError(
                f"boundary suppression: width ({self.width}) must be a positive multiple of iterations "
                f"({self.iterations} >= 1)"
            )
        if self.kernel < 1 or self.kernel % 2 == 0 or self.dilation < 0:
            raise ConfigError(f"boundary suppression: kernel must be odd >= 1 and dilation >= 0, got {self}")


def check_scores(scores: Sequence[str], *, sml: SmlStats | None = None) -> tuple[str, ...]:
    """``scores`` as a tuple after validation: known names, at least one, no repeats, SML statistics if asked."""
    scores = tuple(scores)
    if not scores:
        raise ConfigError(f"scores: give at least one of {', '.join(POSTPROCESS_SCORES)}")
    for name in scores:
        if name not in POSTPROCESS_SCORES:
            raise ConfigError(f"score '{name}' is unknown; allowed values: {', '.join(POSTPROCESS_SCORES)}")
    if len(set(scores)) != len(scores):
        raise ConfigError(f"scores: each score at most once, got {list(scores)}")
    if "sml" in scores and sml is None:
        raise ConfigError("score 'sml' needs per-class statistics: run `moose calibrate CKPT --data DIR` first")
    return scores


def _resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _nearest(labels: torch.Tensor, size: Size) -> torch.Tensor:
    """Nearest-neighbour resize of float [N, 1, h, w] to ``size`` with pixel-centre alignment.

    Output pixel i reads input pixel floor((i + 0.5) * h / H'), as ``nearest-exact`` does (which the opset-17
    exporter lacks; its ``nearest`` floors i * h / H' and shifts class borders by up to half an input pixel).
    Two Gathers over Range-built indices, dynamic sizes included.
    """
    in_h, in_w = labels.shape[2], labels.shape[3]
    rows = ((torch.arange(size[0], device=labels.device) + 0.5) * in_h / size[0]).floor().long()
    cols = ((torch.arange(size[1], device=labels.device) + 0.5) * in_w / size[1]).floor().long()
    return labels.index_select(2, rows).index_select(3, cols)


def class_argmax(logits: torch.Tensor) -> torch.Tensor:
    """Arg-max over the class axis of float [N, C, h, w] -> float32 [N, 1, h, w] (first maximum, like argmax).

    Written as an elementwise chain over the class slices (Max, then Equal + Where from the last class to the
    first): ONNX Runtime's CPU ArgMax over axis 1 is several times slower, and the ids stay float32 for the
    nearest-neighbour resize and the final uint8 cast (no int64 tensor).
    """
    slices = logits.unbind(1)
    top = slices[0]
    for item in slices[1:]:
        top = top.maximum(item)
    index = torch.zeros_like(top)
    for c in range(len(slices) - 1, -1, -1):
        index = torch.where(slices[c] == top, top.new_tensor(float(c)), index)
    return index.unsqueeze(1)


def _sml(mean: torch.Tensor, stats: SmlStats) -> torch.Tensor:
    """Standardised max-logit of aggregated logits float32 [N, C, h, w] -> [N, h, w] (higher = anomalous).

    ``-(max_c z - mu[k]) / sigma[k]`` with k the arg-max class; the class statistics are selected with an
    elementwise chain (no Gather, no int64).
    """
    slices = mean.unbind(1)
    top = slices[0]
    for item in slices[1:]:
        top = top.maximum(item)
    mu = torch.zeros_like(top)
    sigma = torch.ones_like(top)
    means, stds = stats.mean.tolist(), stats.std.tolist()
    for c in range(len(slices) - 1, -1, -1):
        hit = slices[c] == top
        mu = torch.where(hit, top.new_tensor(means[c]), mu)
        sigma = torch.where(hit, top.new_tensor(stds[c]), sigma)
    return -(top - mu) / sigma


def _box_sum(x: torch.Tensor) -> torch.Tensor:
    """3x3 sum with zero padding, float [N, 1, h, w]."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True) * 9.0


def _gaussian(kernel: int, sigma: float = 1.0) -> torch.Tensor:
    axis = torch.arange(kernel, dtype=torch.float32) - (kernel - 1) / 2
    g = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    return (g / g.sum()).view(1, 1, kernel, kernel)


def class_borders(labels: torch.Tensor) -> torch.Tensor:
    """bool [N, 1, h, w]: pixels whose 3x3 neighbourhood (inside the image) holds another class than their own.

    ``labels``: float [N, 1, h, w] class ids. MaxPool + elementwise ops only.
    """
    high = F.max_pool2d(labels, 3, stride=1, padding=1)
    low = -F.max_pool2d(-labels, 3, stride=1, padding=1)
    return high != low


def suppress_boundaries(score: torch.Tensor, labels: torch.Tensor, config: BoundarySuppression) -> torch.Tensor:
    """Boundary suppression + dilated smoothing (:class:`BoundarySuppression`) of float [N, 1, h, w] scores.

    ``labels``: float [N, 1, h, w] class ids at the same size. Only MaxPool, AveragePool, Conv and elementwise ops.
    """
    boundary = class_borders(labels).to(score.dtype)
    step = config.width // config.iterations
    out = score
    for i in range(config.iterations):
        radius = 0 if i == config.iterations - 1 else config.width - step * i - 1
        band = F.max_pool2d(boundary, 2 * radius + 1, stride=1, padding=radius) if radius > 0 else boundary
        keep = 1.0 - band
        count = _box_sum(keep)
        mean = _box_sum(out * keep) / count.clamp_min(1.0)
        out = torch.where((band > 0) & (count > 0), mean, out)
    if config.dilation > 0:
        weight = _gaussian(config.kernel).to(out)
        pad = config.dilation * (config.kernel - 1) // 2
        smooth = F.conv2d(out, weight, padding=pad, dilation=config.dilation)
        norm = F.conv2d(torch.ones_like(out), weight, padding=pad, dilation=config.dilation)
        out = smooth / norm
    return out


def road_region(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Drivable area of float class ids [N, 1, h, w] -> float {0, 1} [N, 1, h, w], enclosed holes filled.

    A pixel is in the region when its class is one of ``classes``, or when road pixels lie to its left, right,
    above and below in its row and column (scan-line fill: every hole enclosed by road is filled, e.g. an object
    on the road; so are concave bays of the road's outline). CumSum + elementwise ops only.
    """
    road = torch.zeros_like(labels)
    for c in classes:
        road = torch.maximum(road, (labels == float(c)).to(labels.dtype))
    rows, cols = road.cumsum(dim=3), road.cumsum(dim=2)
    left, above = rows > 0, cols > 0
    right = (rows[..., -1:] - rows + road) > 0
    below = (cols[..., -1:, :] - cols + road) > 0
    return torch.maximum(road, (left & right & above & below).to(labels.dtype))


def _compute(
    scores: Sequence[str], mean: torch.Tensor | None, heads: list[torch.Tensor] | None, sml: SmlStats | None
) -> dict[str, torch.Tensor]:
    """Scores from the mean logits (mean-logit scores) and the heads (softmax scores), all at one size."""
    out: dict[str, torch.Tensor] = {}
    for name in scores:
        source = mean if name in MEAN_LOGIT_SCORES else heads
        if source is None:
            raise ConfigError(f"postprocess: no logits were prepared for score '{name}'")
        out[name] = _sml(source, sml) if name == "sml" else compute_score(name, source)
    return out


def score_maps(
    heads: Sequence[torch.Tensor], scores: Sequence[str], *, sml: SmlStats | None = None
) -> dict[str, torch.Tensor]:
    """Every score of ``scores`` for heads' logits M x float32 [N, C, h, w] at their own size -> float32 [N, h, w].

    The mean over heads is computed once and shared by the mean-logit scores.
    """
    scores = check_scores(scores, sml=sml)
    heads = [h.float() for h in heads]
    mean = mean_logits(heads) if len(heads) > 1 else heads[0]
    return _compute(scores, mean, heads, sml)


def _work_heads(
    heads: list[torch.Tensor], scores: Sequence[str], work: Size | None, labels_from_mean: bool
) -> tuple[torch.Tensor, list[torch.Tensor] | None, torch.Tensor | None]:
    """(label logits, heads for softmax scores, mean logits) resampled to ``work`` (None: as they are).

    Upsampling is linear, so the mean of the heads is taken first and upsampled once; every head is resampled
    only when a softmax-based score needs it.
    """
    need_mean = labels_from_mean or any(name in MEAN_LOGIT_SCORES for name in scores)
    need_all = any(name not in MEAN_LOGIT_SCORES for name in scores)
    mean = (mean_logits(heads) if len(heads) > 1 else heads[0]) if need_mean else None
    if work is None:
        return (mean if labels_from_mean and mean is not None else heads[0]), (heads if need_all else None), mean
    all_up = [_resize(h, work) for h in heads] if need_all else None
    if mean is not None:
        mean = all_up[0] if all_up is not None and len(heads) == 1 else _resize(mean, work)
    if labels_from_mean and mean is not None:
        return mean, all_up, mean
    return (all_up[0] if all_up is not None else _resize(heads[0], work)), all_up, mean


def _resolve_work(work_size: Size | str | None, size: Size) -> tuple[Size | None, bool]:
    """(the size to compute at or None for the heads' own, whether that is the output size)."""
    if work_size is None:
        return None, False
    if isinstance(work_size, str):
        if work_size == WORK_OUTPUT:
            return size, True
        if work_size == WORK_FEATURE:
            return None, False
        raise ConfigError(f"work_size '{work_size}' is unknown; allowed: (H, W), {WORK_FEATURE}, {WORK_OUTPUT}")
    return work_size, False


def postprocess(
    heads: Sequence[torch.Tensor],
    size: Size,
    *,
    scores: Sequence[str] = ("max_logit",),
    work_size: Size | str | None = WORK_FEATURE,
    score_size: str | None = None,
    labels_from_mean: bool = False,
    sml: SmlStats | None = None,
    boundary: BoundarySuppression | None = None,
    road_classes: Sequence[int] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Labels and anomaly scores at ``size`` from the heads' logits.

    Args:
        heads: M >= 1 logit tensors float [N, C, h, w] (global head first, then the probes or ensemble members).
        size: (H', W') of the outputs (ints or traced sizes).
        scores: names from :data:`POSTPROCESS_SCORES`; each is computed on all heads (MOoSe Eq. 3-6).
        work_size: where labels and scores are computed: ``"feature"`` (the heads' (h, w)), ``"output"`` (exact:
            every needed C-channel tensor upsampled to ``size``) or an (H, W) such as the network input size.
            Results are then resized to ``size``: scores bilinearly, labels by nearest neighbour (pixel centres).
        score_size: None (scores at ``work_size`` too) or ``"feature"``: scores at the heads' own size, then
            upsampled bilinearly to the work size (labels stay at ``work_size``).
        labels_from_mean: labels from the mean logits (ensembles) instead of the global head (MOoSe: the probes
            never change the segmentation).
        sml: per-class statistics, required for ``"sml"``.
        boundary: boundary suppression + dilated smoothing of every score at the work size, or None.
        road_classes: class ids of the drivable area; when given, every score also comes gated as
            ``"<score>_road"``: outside :func:`road_region` it takes the image's minimum of that score.

    Returns:
        ``(labels, maps)``: labels uint8 [N, H', W'] (arg-max class ids), maps ``{score: float32 [N, H', W']}`` in
        the order of ``scores`` (then the ``_road`` maps).
    """
    scores = check_scores(scores, sml=sml)
    if not heads:
        raise ConfigError("postprocess: 'heads' is empty; expected the global head and K >= 0 probes")
    if score_size not in (None, WORK_FEATURE):
        raise ConfigError(f"score_size '{score_size}' is unknown; allowed: None (the work size), {WORK_FEATURE}")
    work, exact = _resolve_work(work_size, size)
    heads = [h.float() for h in heads]
    if score_size == WORK_FEATURE and work is not None:
        mean = mean_logits(heads) if len(heads) > 1 else heads[0]  # once: mean-logit scores and ensemble labels
        maps = _resize_maps(_compute(scores, mean, heads, sml), work)
        label_logits = _resize(mean if labels_from_mean else heads[0], work)
    else:
        label_logits, all_heads, mean = _work_heads(heads, scores, work, labels_from_mean)
        maps = _compute(scores, mean, all_heads, sml)
    # float32 class ids (nearest resize; TensorRT casts to uint8 only from float32/float16) -> uint8 last.
    labels = class_argmax(label_logits)
    if boundary is not None:
        maps = {name: suppress_boundaries(m[:, None], labels, boundary)[:, 0] for name, m in maps.items()}
    if road_classes is not None:
        region = road_region(labels, road_classes)[:, 0] > 0
        for name in scores:
            floor = maps[name].amin(dim=(1, 2), keepdim=True)
            maps[f"{name}_road"] = torch.where(region, maps[name], floor)
    if not exact:
        labels = _nearest(labels, size)
        maps = _resize_maps(maps, size)
    return labels[:, 0].to(torch.uint8), maps


def _resize_maps(maps: dict[str, torch.Tensor], size: Size) -> dict[str, torch.Tensor]:
    """Bilinear resize of every float32 [N, h, w] map to ``size`` in one Resize over the stacked maps."""
    names = list(maps)
    stacked = _resize(torch.stack([maps[name] for name in names], dim=1), size)
    return {name: stacked[:, index] for index, name in enumerate(names)}
