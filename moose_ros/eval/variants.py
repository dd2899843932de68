"""Score variants: a base score, optionally with boundary suppression and the road gate, from head logits.

A variant is written ``<score>[+bs][+road]``: ``sml+bs+road`` is the standardised max-logit after boundary
suppression and dilated smoothing, gated to the predicted drivable area. :func:`variant_maps` computes any set of
variants for one set of heads with the fused graph's own post-processing
(:func:`moose_ros.export.postprocess.postprocess`: one call per boundary setting), so a variant's numbers are
the numbers of a graph exported with the same options (``moose export --score S [--boundary-suppression]
[--road-gate CLASSES]``; the gated map is the graph's ``anomaly_<score>_road`` output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moose_ros.errors import ConfigError

__all__ = ["ABLATION_VARIANTS", "ScoreVariant", "parse_variants", "variant_maps"]


@dataclass(frozen=True)
class ScoreVariant:
    """One post-processing variant of a score.

    Attributes:
        score: a fused-graph score name (``max_logit``, ``entropy``, ``msp``, ``sml``, ...).
        boundary: boundary suppression + dilated smoothing (``+bs``).
        road: gated to the predicted drivable area, holes filled (``+road``).
    """

    score: str
    boundary: bool = False
    road: bool = False

    @property
    def name(self) -> str:
        """``<score>[+bs][+road]``."""
        return self.score + ("+bs" if self.boundary else "") + ("+road" if self.road else "")

    @property
    def output(self) -> str:
        """The graph output's score name that holds this variant (``<score>`` or ``<score>_road``)."""
        return f"{self.score}_road" if self.road else self.score

    @classmethod
    def parse(cls, text: str) -> ScoreVariant:
        """``"sml+bs+road"`` -> ScoreVariant("sml", boundary=True, road=True)."""
        from moose_ros.export.postprocess import POSTPROCESS_SCORES

        score, *flags = text.strip().split("+")
        bad_flags = any(f not in ("bs", "road") for f in flags) or len(set(flags)) < len(flags)
        if score not in POSTPROCESS_SCORES or bad_flags:
            allowed = ", ".join(POSTPROCESS_SCORES)
            raise ConfigError(f"score variant '{text}': expected <score>[+bs][+road] with score one of {allowed}")
        return cls(score, boundary="bs" in flags, road="road" in flags)


def parse_variants(texts: Sequence[str]) -> tuple[ScoreVariant, ...]:
    """Parse and check ``texts`` (at least one, no repeats)."""
    variants = tuple(ScoreVariant.parse(t) for t in texts)
    if not variants:
        raise ConfigError("score variants: give at least one")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"score variants: each at most once, got {names}")
    return variants


#: The ablation of the bundled model: the paper's scores, SML, and SML / entropy with the two boosters.
ABLATION_VARIANTS: tuple[ScoreVariant, ...] = parse_variants(
    ("max_logit", "entropy", "msp", "sml", "sml+bs", "sml+bs+road", "entropy+bs", "entropy+bs+road")
)


def variant_maps(
    heads: Sequence[Any],
    size: Sequence[Any],
    variants: Sequence[ScoreVariant],
    *,
    input_hw: Any,
    resolution: str | None = None,
    sml: Any = None,
    boundary: Any = None,
    road_classes: Sequence[int] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Labels and every variant's map for one set of heads.

    Args:
        heads: M >= 1 logits float [N, C, h, w] (global head first; labels are its arg-max).
        size: (H, W) of the maps.
        variants: what to compute.
        input_hw: the network input's (H, W).
        resolution: where scores and labels are computed, a ``score_resolution`` of the fused graph (None: its
            default, as in the deployed graph).
        sml: :class:`~moose_ros.export.postprocess.SmlStats` of these heads (needed by ``sml`` variants).
        boundary: :class:`~moose_ros.export.postprocess.BoundarySuppression` for ``+bs`` variants (None: defaults).
        road_classes: drivable class ids for ``+road`` variants.

    Returns:
        ``(labels uint8 [N, H, W], {variant name: float32 [N, H, W]})``.
    """
    from moose_ros.export.postprocess import DEFAULT_RESOLUTION, BoundarySuppression, postprocess, resolution_sizes

    work_size, score_size = resolution_sizes(resolution or DEFAULT_RESOLUTION, input_hw)

    if any(v.road for v in variants) and not road_classes:
        raise ConfigError("score variants with +road need the drivable classes (road_classes)")
    out: dict[str, Any] = {}
    labels = None
    for with_bs in (False, True):
        group = [v for v in variants if v.boundary == with_bs]
        if not group:
            continue
        scores = tuple(dict.fromkeys(v.score for v in group))
        labels, maps = postprocess(
            heads,
            size,
            scores=scores,
            work_size=work_size,
            score_size=score_size,
            sml=sml if "sml" in scores else None,
            boundary=(boundary or BoundarySuppression()) if with_bs else None,
            road_classes=road_classes if any(v.road for v in group) else None,
        )
        for v in group:
            out[v.name] = maps[v.output]
    return labels, {v.name: out[v.name] for v in variants}
