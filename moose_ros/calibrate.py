"""Standardised max-logit (SML, Jung et al., ICCV 2021) statistics of a checkpoint, stored in its meta.

:func:`sml_statistics` runs the network over training images and, for the aggregated logits of each head set
(``"global"``: the global head alone; ``"moose"``: the mean of the global head and the K probes), accumulates per
class the mean and standard deviation of the max logit over the pixels predicted as that class. The logits are
taken at the heads' feature resolution, where the fused graph's default post-processing computes its scores
(:func:`moose_ros.export.postprocess.postprocess`), so the statistics describe the values the graph standardises.

:func:`write_sml_calibration` stores them in the checkpoint meta as ``calibration["sml"]``::

    {"global": {"mean": [C], "std": [C], "count": [C]}, "moose": {...},
     "data": "<dataset root>", "images": n, "resolution": "feature"}

``moose export --score sml`` reads them back (a class never predicted gets the statistics of all pixels).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = ["SML_HEADS", "SmlAccumulator", "sml_statistics", "write_sml_calibration"]

#: Head sets that get statistics: the global head alone and MOoSe's mean over all heads.
SML_HEADS = ("global", "moose")


class SmlAccumulator:
    """Streaming per-class count / mean / std of max logits (float64 sums).

    Args:
        num_classes: C.
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 1:
            raise ConfigError(f"SmlAccumulator: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.count = np.zeros(num_classes, dtype=np.float64)
        self.total = np.zeros(num_classes, dtype=np.float64)
        self.squares = np.zeros(num_classes, dtype=np.float64)

    def update(self, top: np.ndarray, pred: np.ndarray) -> None:
        """Add pixels: ``top`` float max logits and ``pred`` int predicted classes, same shape."""
        pred = pred.reshape(-1).astype(np.int64)
        top = top.reshape(-1).astype(np.float64)
        if pred.size and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise ConfigError(f"SmlAccumulator: class ids outside 0..{self.num_classes - 1}")
        self.count += np.bincount(pred, minlength=self.num_classes)
        self.total += np.bincount(pred, weights=top, minlength=self.num_classes)
        self.squares += np.bincount(pred, weights=top * top, minlength=self.num_classes)

    def add_heads(self, heads: Sequence[Any], size: tuple[int, int] | None = None) -> None:
        """Add the pixels of one image: heads' logits torch float [1, C, h, w] aggregated by their mean, as the
        fused graph does, at their own (feature) resolution where the graph computes its scores by default, or
        resampled bilinearly to ``size`` (e.g. the network input size for ``score_resolution="input"``)."""
        import torch.nn.functional as F

        from moose_ros.scoring import mean_logits

        z = mean_logits(list(heads)) if len(heads) > 1 else heads[0]
        if size is not None:
            z = F.interpolate(z, size=size, mode="bilinear", align_corners=False)
        top, pred = z.max(dim=1)
        self.update(top.cpu().numpy(), pred.cpu().numpy())

    def compute(self) -> dict[str, list[float]]:
        """``{"mean": [C], "std": [C], "count": [C]}``; classes never predicted take the statistics of all pixels.

        Raises:
            ConfigError: no pixel was added.
        """
        n = self.count.sum()
        if n == 0:
            raise ConfigError("SmlAccumulator: no pixels were added")
        all_mean = self.total.sum() / n
        all_std = float(np.sqrt(max(self.squares.sum() / n - all_mean**2, 0.0)))
        safe = np.maximum(self.count, 1.0)
        mean = np.where(self.count > 0, self.total / safe, all_mean)
        var = np.where(self.count > 0, self.squares / safe - mean**2, all_std**2)
        std = np.sqrt(np.maximum(var, 0.0))
        std = np.where(std > 1e-6, std, max(all_std, 1e-6))  # a class seen once (or constant) keeps a usable scale
        return {"mean": mean.tolist(), "std": std.tolist(), "count": self.count.astype(int).tolist()}


def sml_statistics(
    checkpoint: str | os.PathLike[str],
    dataset: Sequence[Any],
    *,
    limit: int | None = None,
    input_size: Sequence[int] | str | None = "checkpoint",
) -> dict[str, Any]:
    """Per-class max-logit statistics for :data:`SML_HEADS` over ``dataset`` (records with ``image`` uint8 [H, W, 3]).

    Returns:
        ``{"global": {"mean", "std", "count"}, "moose": {...}, "images": n, "resolution": "feature"}`` (the
        statistics of the heads' feature-resolution logits, where the fused graph computes its scores).
    """
    import torch

    from moose_ros.export.onnx_export import make_fused

    fused, meta = make_fused(checkpoint, input_size=input_size)
    num_classes = len(meta.classes) if meta is not None else int(fused.model.num_classes)
    acc = {name: SmlAccumulator(num_classes) for name in SML_HEADS}
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ConfigError("moose calibrate: the dataset holds no images")
    for index in range(n):
        image = np.ascontiguousarray(np.asarray(dataset[index].image))
        with torch.inference_mode():
            x = fused.preprocess(torch.from_numpy(image)[None])
            heads = fused.head_logits(x)
            for name, used in (("global", heads[:1]), ("moose", heads)):
                acc[name].add_heads(used)
    return {**{name: a.compute() for name, a in acc.items()}, "images": n, "resolution": "feature"}


def write_sml_calibration(
    checkpoint: str | os.PathLike[str],
    stats: dict[str, Any],
    *,
    out: str | os.PathLike[str] | None = None,
    data: str = "",
) -> Path:
    """Store ``stats`` as ``calibration["sml"]`` in the checkpoint meta, written to ``out`` (default: in place).

    Other calibration entries (e.g. ``operating_points``) are kept.
    """
    from moose_ros.model import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint, map_location="cpu")
    calibration = dict(meta.calibration)
    calibration["sml"] = {**stats, "data": data}
    target = Path(out) if out is not None else Path(checkpoint)
    return save_checkpoint(target, model, dataclasses.replace(meta, calibration=calibration))
