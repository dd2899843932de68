"""What each training stage trains, in which mode, and with which loss.

- ``base``: the whole segmentation network (trunk); loss on the global head. Probes are left untouched.
- ``probes``: MOoSe's recipe: trunk frozen and always in eval mode (BatchNorm statistics never move), loss = sum
  of the K probes' cross-entropies.
- ``refit``: the fair "Global-refit" baseline: the global head's last layers (after the spatial pyramid) are
  re-initialised and trained alone on the frozen trunk features with the probes' budget; probes untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moose_ros.errors import ConfigError

__all__ = [
    "class_weights",
    "head_logits",
    "prepare_stage",
    "refit_head",
    "reinit_",
    "seg_loss_sum",
    "set_stage_mode",
    "stage_heads",
]


def refit_head(model: nn.Module) -> nn.Sequential:
    """The global head's last layers that the ``refit`` stage re-initialises and retrains.

    - DeepLabV3 (``classifier = [ASPP, 3x3 conv, BN, ReLU, 1x1 conv]``): everything after the ASPP.
    - DeepLabV3+ (``decoder``): the decoder (two 3x3 conv blocks + 1x1 conv after the ASPP/low-level merge).
    - PSPNet (``classifier = [3x3 conv, BN, ReLU, dropout, 1x1 conv]``): the whole classifier.

    Returns a Sequential that shares the modules with ``model`` (parameters are the model's own).
    """
    decoder = getattr(model, "decoder", None)
    if isinstance(decoder, nn.Sequential):
        return decoder
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Sequential) or len(classifier) == 0:
        raise ConfigError(f"refit: {type(model).__name__} has no Sequential 'classifier' or 'decoder' to refit")
    first = type(classifier[0]).__name__
    if first == "ASPP":
        return nn.Sequential(*list(classifier)[1:])
    return classifier


def reinit_(modules: nn.Module, seed: int) -> None:
    """Re-initialise every parameter and BatchNorm statistic in ``modules`` with a fixed ``seed``."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in modules.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
            if hasattr(module, "reset_parameters") and module is not modules:
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(state)


def prepare_stage(model: nn.Module, stage: str, *, seed: int, reinit: bool = True) -> list[nn.Parameter]:
    """Set ``requires_grad`` for ``stage``; return the trainable parameters.

    ``probes`` re-initialises the probes and ``refit`` the global head's last layers from ``seed`` (so seeds give
    independent heads); ``reinit=False`` (resuming) keeps the current weights.

    ``model`` is a :class:`~moose_ros.model.base.MooseSegmentationModel`.
    """
    if stage == "base":
        model.unfreeze_trunk()
        for p in model.probe_parameters():
            p.requires_grad_(False)
        params = list(model.trunk_parameters())
    elif stage == "probes":
        model.train_probes_only()
        if reinit:  # each probe seed starts from its own initialisation
            reinit_(model.probes, seed)
        for p in model.probe_parameters():
            p.requires_grad_(True)
        params = list(model.probe_parameters())
    elif stage == "refit":
        model.train_probes_only()
        for p in model.probe_parameters():
            p.requires_grad_(False)
        head = refit_head(model)
        if reinit:
            reinit_(head, seed)
        for p in head.parameters():
            p.requires_grad_(True)
        params = list(head.parameters())
    else:
        raise ConfigError(f"stage '{stage}' is unknown; allowed values: base, probes, refit")
    if not params:
        raise ConfigError(f"stage '{stage}': {type(model).__name__} has no parameters to train")
    return params


def set_stage_mode(model: nn.Module, stage: str, training: bool) -> None:
    """``model.train(training)`` with the stage's exceptions.

    probes/refit: the frozen trunk stays in eval mode (the model enforces it); in ``refit`` the re-initialised
    head follows ``training`` while the probes stay in eval mode; in ``base`` the untrained probes stay in eval.
    """
    model.train(training)
    if stage == "refit":
        model.probes.eval()
        refit_head(model).train(training)
    elif stage == "base":
        model.probes.eval()


def stage_heads(stage: str) -> str:
    """Which outputs the stage's loss reads: "out" (base, refit) or "probes"."""
    return "probes" if stage == "probes" else "out"


def head_logits(outputs: dict, stage: str) -> Sequence[torch.Tensor]:
    """The logits the loss of ``stage`` is computed on: [global] or the K probes, each float [N, C, h, w]."""
    return list(outputs["probes"]) if stage_heads(stage) == "probes" else [outputs["out"]]


def class_weights(labels: Sequence[np.ndarray], num_classes: int, power: float,
                  ignore_index: int = 255) -> torch.Tensor:
    """Per-class loss weights ``(median frequency / frequency) ** power`` from label pixel counts.

    ``power`` 0 gives all ones; 0.5 (the square root of median-frequency balancing) lifts rare classes without
    letting one rare class dominate. Ratios are clipped to [1/8, 8], then scaled so that the pixel-weighted mean
    weight is 1 (the loss keeps its scale); classes that never occur get weight 1.

    Args:
        labels: uint8 [H, W] train-id maps (``ignore_index`` pixels are not counted).
        num_classes: C.
        power: balancing exponent >= 0.

    Returns:
        float32 [C].
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for label in labels:
        flat = np.asarray(label).ravel()
        counts += np.bincount(flat[flat != ignore_index], minlength=num_classes)[:num_classes]
    present = counts > 0
    if power == 0 or not present.any():
        return torch.ones(num_classes)
    freq = counts / counts.sum()
    weights = np.ones(num_classes)
    weights[present] = np.clip((np.median(freq[present]) / freq[present]) ** power, 1 / 8, 8)
    weights[present] /= float((freq[present] * weights[present]).sum())
    return torch.as_tensor(weights, dtype=torch.float32)


def seg_loss_sum(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """Summed pixel-wise cross-entropy of feature-resolution ``logits`` upsampled to the labels' size.

    Args:
        logits: float [N, C, h, w].
        labels: int64 [N, H, W] train ids, ``ignore_index`` excluded.
        weight: optional float [C] per-class weights (:func:`class_weights`).

    Returns:
        Scalar float32: the sum over valid pixels (divide by the global valid-pixel count for the mean).
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=ignore_index, reduction="sum")
