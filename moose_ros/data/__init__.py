"""Dataset readers and the SynthStreet generator (numpy + Pillow only; no torch, no rclpy).

Readers are sorted, deterministic :class:`~collections.abc.Sequence` objects of :class:`SegSample`
(``image`` uint8 [H, W, 3] RGB, ``label`` uint8 [H, W] train ids, 255 = ignore) or :class:`OodSample`
(``ood`` uint8 [H, W]: 0 in-distribution, 1 anomaly, 255 void). :func:`open_dataset` picks one by name.
A wrong root or a missing file raises :class:`~moose_ros.errors.DatasetError` naming the path and layout; so do
a corrupt or oversized image (:mod:`moose_ros.data.imageio`, the one decoder every reader uses) and a label value
outside the layout's documented set (Fishyscapes 0/1/255, LostAndFound 0-254), with the values and pixel counts.
SynthStreet (:mod:`moose_ros.data.synth`) writes the Cityscapes, LostAndFound and Fishyscapes layouts.
"""

from __future__ import annotations

from moose_ros.data.bdd_anomaly import BDD_ANOMALY_TRAIN_IDS, BddAnomalyDataset
from moose_ros.data.cityscapes import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    CITYSCAPES_LABEL_IDS,
    LABEL_ID_TO_TRAIN_ID,
    LABEL_ID_TO_TRAIN_ID_LUT,
    CityscapesDataset,
    label_ids_to_train_ids,
)
from moose_ros.data.common import IGNORE_INDEX, OOD_ANOMALY, OOD_INLIER, OOD_VOID, OodSample, PairDataset, SegSample
from moose_ros.data.loader import iter_batches, random_crop_flip
from moose_ros.data.lostandfound import FishyscapesLafDataset, LostAndFoundDataset, laf_to_ood
from moose_ros.data.registry import DATASET_KINDS, open_dataset
from moose_ros.data.road_anomaly import RoadAnomalyDataset
from moose_ros.data.streethazards import STREETHAZARDS_CLASSES, STREETHAZARDS_COLORS, StreetHazardsDataset

__all__ = [
    "BDD_ANOMALY_TRAIN_IDS",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "CITYSCAPES_LABEL_IDS",
    "DATASET_KINDS",
    "IGNORE_INDEX",
    "LABEL_ID_TO_TRAIN_ID",
    "LABEL_ID_TO_TRAIN_ID_LUT",
    "OOD_ANOMALY",
    "OOD_INLIER",
    "OOD_VOID",
    "STREETHAZARDS_CLASSES",
    "STREETHAZARDS_COLORS",
    "BddAnomalyDataset",
    "CityscapesDataset",
    "FishyscapesLafDataset",
    "LostAndFoundDataset",
    "OodSample",
    "PairDataset",
    "RoadAnomalyDataset",
    "SegSample",
    "StreetHazardsDataset",
    "iter_batches",
    "label_ids_to_train_ids",
    "laf_to_ood",
    "open_dataset",
    "random_crop_flip",
]
