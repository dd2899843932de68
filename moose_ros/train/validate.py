"""Per-head validation: mIoU of the global head, of every probe, and of MOoSe's mean-of-heads prediction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from moose_ros.metrics.segmentation import SegmentationMetrics
from moose_ros.train.data import resize_pair, to_tensor

__all__ = ["evaluate_heads", "iter_batches", "recalibrate_bn"]


def iter_batches(
    samples: Sequence[Any], *, resize: tuple[int, int] | None, batch_size: int, limit: int | None = None
) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Group consecutive samples of equal (resized) size into batches of at most ``batch_size``.

    Yields ``(images, labels)``: lists of uint8 [H, W, 3] and uint8 [H, W] arrays (the label field of a
    ``SegSample`` or the ``ood`` field of an ``OodSample``).
    """
    count = len(samples) if limit is None else min(limit, len(samples))
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for i in range(count):
        sample = samples[i]
        target = sample.label if hasattr(sample, "label") else sample.ood
        image, label = np.asarray(sample.image), np.asarray(target)
        if resize is not None:
            image, label = resize_pair(image, label, resize)
        if images and (image.shape != images[0].shape or len(images) == batch_size):
            yield images, labels
            images, labels = [], []
        images.append(image)
        labels.append(label)
    if images:
        yield images, labels


def _upsampled(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def evaluate_heads(
    model: torch.nn.Module,
    samples: Sequence[Any],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    num_classes: int,
    ignore_index: int = 255,
    resize: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    batch_size: int = 4,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Validation mIoU per head on ``samples`` (``SegSample`` sequence), labels at their (resized) size.

    Every head's feature-resolution logits are bilinearly upsampled to the label size and arg-maxed. MOoSe's
    prediction is the arg-max of the mean of the heads' softmax distributions (global head + K probes).
    The model is put in eval mode (and left there).

    Returns:
        ``{"global_miou", "global_iou_per_class": [C], "probe_miou": [K], "probe_mean_miou", "best_probe",
        "moose_miou", "num_images"}``; IoU values are floats in [0, 1] (per class: nan where a class is absent
        from both labels and predictions).
    """
    model.eval()
    metrics: dict[str, SegmentationMetrics] = {}
    n_images = 0
    for images, labels in iter_batches(samples, resize=resize, batch_size=batch_size, limit=limit):
        x = torch.stack([to_tensor(im, mean, std) for im in images]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        outputs = model(x)
        size = labels[0].shape
        heads = [outputs["out"], *outputs["probes"]]
        keys = ["global", *[f"probe{k}" for k in range(len(heads) - 1)]]
        prob_sum = None
        label_np = np.stack(labels)
        for key, logits in zip(keys, heads, strict=True):
            up = _upsampled(logits, size)
            metrics.setdefault(key, SegmentationMetrics(num_classes, ignore_index)).update(
                up.argmax(1).cpu().numpy(), label_np
            )
            p = torch.softmax(up, dim=1)
            prob_sum = p if prob_sum is None else prob_sum + p
        metrics.setdefault("moose", SegmentationMetrics(num_classes, ignore_index)).update(
            prob_sum.argmax(1).cpu().numpy(), label_np
        )
        n_images += len(images)
    computed = {key: m.compute() for key, m in metrics.items()}
    result = {key: c["miou"] for key, c in computed.items()}
    probe = [result[k] for k in sorted((k for k in result if k.startswith("probe")), key=lambda s: int(s[5:]))]
    return {
        "global_miou": result.get("global", float("nan")),
        "global_iou_per_class": computed["global"]["iou_per_class"] if "global" in computed else [],
        "probe_miou": probe,
        "probe_mean_miou": float(np.mean(probe)) if probe else float("nan"),
        "best_probe": int(np.argmax(probe)) if probe else None,
        "moose_miou": result.get("moose", float("nan")),
        "num_images": n_images,
    }


@torch.no_grad()
def recalibrate_bn(
    model: torch.nn.Module,
    samples: Sequence[Any],
    *,
    count: int,
    mean: Sequence[float],
    std: Sequence[float],
    resize: tuple[int, int] | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    channels_last: bool = False,
) -> int:
    """Re-estimate the trunk's BatchNorm running statistics on the first ``count`` training images.

    Every trunk BN layer gets a cumulative (equal-weight) average of its batch statistics over un-augmented,
    full-size images, so eval mode matches the final weights exactly instead of lagging behind them through the
    exponential moving average of a short, fast-changing training run. Probes are left untouched. The model is
    left in eval mode; returns the number of images used.
    """
    from torch import nn

    trunk_bns = [m for _, module in model.trunk_modules() for m in module.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [bn.momentum for bn in trunk_bns]
    model.eval()
    for bn in trunk_bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
        bn.train()
    used = 0
    try:
        for images, _ in iter_batches(samples, resize=resize, batch_size=batch_size, limit=count):
            if len(images) < 2:
                continue  # a single image gives degenerate statistics in the 1x1 pooling branch
            x = torch.stack([to_tensor(im, mean, std) for im in images]).to(device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            model.trunk_forward(x)
            used += len(images)
    finally:
        for bn, momentum in zip(trunk_bns, saved, strict=True):
            bn.momentum = momentum
        model.eval()
    return used
