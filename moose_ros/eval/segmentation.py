"""Offline segmentation evaluation of a MOoSe network: mIoU per head, ECE and head diversity (Table 4).

:func:`evaluate_segmentation` takes a ``heads_fn(image uint8 [H, W, 3], size (H, W)) -> per-head probabilities
float [M, C, H, W]`` (the global head first; e.g. :meth:`moose_ros.eval.scorers.TorchMooseScorer.head_probs`
without its labels) and a sequence of records with ``image``, ``label`` (uint8 [H, W] train ids, ``ignore_index``
= void) and ``name``.

Rows: ``Global`` (head 0) and ``MOoSe`` (mean over heads) for ECE; MOoSe's segmentation is the global head's by
design, so its mIoU row is the global one; each probe's own mIoU is reported too (``probe k``), diversity
(mutual information, head variance) for the M heads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError, DatasetError
from moose_ros.eval.core import progress_iter
from moose_ros.metrics import CalibrationMetrics, HeadDiversity, SegmentationMetrics

__all__ = ["HeadsFn", "evaluate_segmentation"]

#: (image uint8 [H, W, 3], size (H, W)) -> float [M, C, H, W] per-head class probabilities at ``size``
HeadsFn = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def evaluate_segmentation(
    heads_fn: HeadsFn,
    dataset: Sequence[Any],
    num_classes: int,
    *,
    ignore_index: int | None = 255,
    limit: int | None = None,
    ece_bins: int = 15,
    progress: bool = True,
    desc: str = "segmentation",
) -> dict[str, Any]:
    """mIoU of every head, ECE of Global and MOoSe, MOoSe head diversity over ``dataset``.

    Returns ``{"segmentation": {row: SegmentationMetrics result}, "calibration": {"Global": {...},
    "MOoSe": {...}}, "num_images", "seconds"}`` (``write_report``'s keys).
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of images or None, got {limit}")
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise DatasetError("evaluate_segmentation: the dataset holds no images")
    t0 = time.perf_counter()
    seg: list[SegmentationMetrics] = []
    ece_global = CalibrationMetrics(ece_bins, ignore_index)
    ece_moose = CalibrationMetrics(ece_bins, ignore_index)
    diversity = HeadDiversity(ignore_index)
    for i in progress_iter(range(n), n, desc, progress):
        sample = dataset[i]
        label = np.asarray(sample.label)
        probs = np.asarray(heads_fn(np.asarray(sample.image), label.shape))
        if probs.ndim != 4 or probs.shape[1] != num_classes or probs.shape[2:] != label.shape:
            raise ConfigError(
                f"evaluate_segmentation: heads_fn gave {probs.shape} for image {sample.name}; expected "
                f"[M, {num_classes}, {label.shape[0]}, {label.shape[1]}]"
            )
        if not seg:
            seg = [SegmentationMetrics(num_classes, ignore_index) for _ in range(probs.shape[0])]
        for m, metric in enumerate(seg):
            metric.update(probs[m].argmax(axis=0).astype(np.uint8), label)
        ece_global.update(probs[:1], label)
        ece_moose.update(probs, label)
        diversity.update(probs, label)
    rows: dict[str, Any] = {}
    for m, metric in enumerate(seg):
        r = metric.compute()
        rows["Global" if m == 0 else f"probe {m}"] = {
            "miou": r["miou"],
            "pixel_acc": r["pixel_acc"],
            "iou_per_class": r["iou_per_class"],
        }
    div = diversity.compute()
    return {
        "segmentation": rows,
        "calibration": {
            "Global": {"ece": ece_global.compute()["ece"], "mutual_information": 0.0, "variance": 0.0},
            "MOoSe": {
                "ece": ece_moose.compute()["ece"],
                "mutual_information": div["mutual_information"],
                "variance": div["variance"],
            },
        },
        "num_images": n,
        "seconds": time.perf_counter() - t0,
    }
