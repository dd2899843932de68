"""Input normalisation constants, defined once (no dependencies): images are scaled to [0, 1], then
``(x - mean) / std`` per RGB channel."""

from __future__ import annotations

__all__ = ["IDENTITY_MEAN", "IDENTITY_STD", "IMAGENET_MEAN", "IMAGENET_STD"]

#: ImageNet statistics (torchvision's and most Cityscapes DeepLabs' normalisation).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: No normalisation beyond the [0, 1] scaling (e.g. the MOoSe authors' StreetHazards model).
IDENTITY_MEAN: tuple[float, float, float] = (0.0, 0.0, 0.0)
IDENTITY_STD: tuple[float, float, float] = (1.0, 1.0, 1.0)
