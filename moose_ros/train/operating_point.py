"""Operating points from an OoD *validation* split: the node's default mask threshold and overlay range.

The held-out OoD test split never takes part in a choice. For each head set (``moose``: mean over the global
head and the probes; ``global``: the global head alone) and each score, on the whole image of every validation
frame (anomaly = unknown object, every other pixel in-distribution; the node's mask covers the whole image):

Every score *variant* (``sml+bs``, ``entropy+bs+road``, ...: :mod:`moose_ros.eval.variants`) gets its own point,
because boundary suppression and the road gate change a score's values:

- ``threshold``: the score value that maximises the pixel F1 of ``score > threshold``;
- ``display_range``: ``[lo, hi]`` = [median score of in-distribution pixels, 95th percentile of anomaly pixels],
  so the background of the overlay stays dark and most of an object saturates.

The result is stored in the checkpoint's ``calibration["operating_points"]``; the exporter copies the entries of
the exported head set and post-processing into the ONNX metadata (``thresholds`` / ``score_ranges``, keyed by the
graph's score names: ``sml`` and ``sml_road`` of a graph exported with boundary suppression read the ``sml+bs`` and
``sml+bs+road`` points), where the node reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["HEAD_SETS", "best_f1_threshold", "choose_operating_points", "store_operating_points"]

#: Head sets an operating point is chosen for: the fused graph's ``moose`` and ``global`` exports.
HEAD_SETS: tuple[str, ...] = ("moose", "global")


def best_f1_threshold(scores: np.ndarray, anomaly: np.ndarray) -> dict[str, float]:
    """Threshold maximising pixel F1 of ``scores > threshold`` (the node's mask rule).

    Args:
        scores: float32 [P] scores of valid pixels (higher = more anomalous).
        anomaly: bool [P], True for anomaly pixels (at least one).

    Returns:
        ``{"threshold", "f1", "precision", "recall"}``. The F1-best cut of the metrics' precision-recall curve
        flags ``score >= t_k``; the returned threshold lies halfway between ``t_k`` and the next lower distinct
        score, so ``score > threshold`` flags exactly the same pixels and ties are never split.
    """
    from moose_ros.metrics.curves import best_f1_threshold as curve_best_f1
    from moose_ros.metrics.curves import curve_from_scores

    if not anomaly.any():
        raise ValueError("best_f1_threshold: no anomaly pixel")
    curve = curve_from_scores(scores, anomaly)
    t_k, f1 = curve_best_f1(curve)
    k = int(np.flatnonzero(curve.thresholds == t_k)[0])
    below = curve.thresholds[k + 1] if k + 1 < len(curve.thresholds) else t_k - 1.0
    return {"threshold": float((t_k + below) / 2.0), "f1": f1,
            "precision": float(curve.precision()[k]), "recall": float(curve.recall()[k])}


@torch.no_grad()
def choose_operating_points(
    checkpoint: str | Path,
    samples: Any,
    variants: Sequence[Any],
    *,
    road_classes: Sequence[int | str] = ("road", "sidewalk"),
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{head_set: {variant: {"threshold", "display_range", "f1", "precision", "recall"}}}`` on ``samples``.

    ``samples`` is an ``OodSample`` sequence in the Fishyscapes layout (``ood`` uint8 [H, W]: 1 anomaly, else
    in-distribution for the whole-image protocol); ``variants`` are
    :class:`~moose_ros.eval.variants.ScoreVariant` s. Maps come from the fused graph's post-processing at the
    network input size (:func:`~moose_ros.eval.variants.variant_maps`), the global head set with its own SML
    statistics (``sml`` variants need ``moose calibrate`` first).
    """
    from moose_ros.eval.core import progress_iter
    from moose_ros.eval.variants import variant_maps
    from moose_ros.export.onnx_export import class_ids, make_fused, sml_from_meta

    fused, meta = make_fused(checkpoint)
    fused.to(device)
    needs_sml = any(v.score == "sml" for v in variants)
    sml = {h: sml_from_meta(meta, h) if needs_sml else None for h in HEAD_SETS}
    roads = class_ids(road_classes, meta)
    collected: dict[str, dict[str, list[np.ndarray]]] = {h: {v.name: [] for v in variants} for h in HEAD_SETS}
    labels: list[np.ndarray] = []
    for i in progress_iter(range(len(samples)), len(samples), "operating points", progress):
        sample = samples[i]
        ood = np.asarray(sample.ood)
        x = fused.preprocess(torch.from_numpy(np.ascontiguousarray(sample.image))[None].to(device))
        heads = fused.head_logits(x)
        for head_set, used in (("moose", heads), ("global", heads[:1])):
            _, maps = variant_maps(used, ood.shape, variants, input_hw=(x.shape[2], x.shape[3]),
                                   sml=sml[head_set], road_classes=roads)
            for name, m in maps.items():
                collected[head_set][name].append(m[0].cpu().numpy().astype(np.float32).ravel())
        labels.append((ood == 1).ravel())
    anomaly = np.concatenate(labels)
    if not anomaly.any():
        raise ValueError("choose_operating_points: the validation split has no anomaly pixel")
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for head_set, by_variant in collected.items():
        for name, parts in by_variant.items():
            values = np.concatenate(parts)
            point = best_f1_threshold(values, anomaly)
            lo = float(np.median(values[~anomaly]))
            hi = float(np.percentile(values[anomaly], 95.0))
            point["display_range"] = [lo, hi if hi > lo else lo + 1.0]
            result.setdefault(head_set, {})[name] = point
    return result


def store_operating_points(
    checkpoint: str | Path, points: dict[str, Any], *, split: dict[str, Any], out: str | Path | None = None
) -> Path:
    """Write ``checkpoint`` (or a copy at ``out``) with ``calibration["operating_points"]`` = ``points``.

    ``split`` describes the validation data (root, seed, images, criterion) and is stored beside the points.
    """
    from moose_ros.model import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    calibration = {**meta.calibration, "operating_points": points, "operating_split": split}
    return save_checkpoint(Path(out) if out is not None else Path(checkpoint), model,
                           replace(meta, calibration=calibration))
