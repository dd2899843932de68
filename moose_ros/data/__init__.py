"""Dataset readers and the SynthStreet generator (numpy + Pillow only; no torch, no rclpy).

Readers are sorted, deterministic :class:`~collections.abc.Sequence` objects of :class:`SegSample`
(``image`` uint8 [H, W, 3] RGB, ``label`` uint8 [H, W] train ids, 255 = ignore) or :class:`OodSample`
(``ood`` uint8 [H, W]: 0 in-distribution, 1 anomaly, 255 void). :func:`open_dataset` picks one by name.
"""

from __future__ import annotations

from moose_ros.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    CITYSCAPES_LABEL_IDS,
    LABEL_ID_TO_TRAIN_ID,
    LABEL_ID_TO_TRAIN_ID_LUT,
    CityscapesDataset,
    label_ids_to_train_ids,
)
from moose_ros.data.common import IGNORE_INDEX, OodSample, SegSample

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "CITYSCAPES_LABEL_IDS",
    "IGNORE_INDEX",
    "LABEL_ID_TO_TRAIN_ID",
    "LABEL_ID_TO_TRAIN_ID_LUT",
    "CityscapesDataset",
    "OodSample",
    "SegSample",
    "label_ids_to_train_ids",
]
