"""Cityscapes: the 19 evaluation classes, the official palette, labelId -> trainId, and the fine-label reader.

Layout (as released by cityscapes-dataset.com)::

    <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png

``labelIds`` (0..33) are mapped to the 19 train ids with the official table; every other id becomes 255.
SynthStreet writes this same layout, so one reader serves both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moose_ros.data.common import IGNORE_INDEX, PairDataset, SegSample, check_pairs, lut_from_pairs, require_dir
from moose_ros.errors import DatasetError

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_COLORS",
    "CITYSCAPES_LABEL_IDS",
    "LABEL_ID_TO_TRAIN_ID",
    "LABEL_ID_TO_TRAIN_ID_LUT",
    "CityscapesDataset",
    "label_ids_to_train_ids",
]

#: the 19 classes, indexed by train id
CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)

#: official RGB palette, indexed by train id
CITYSCAPES_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)

#: all 34 Cityscapes labelIds by name (plus license plate = -1), from the official label definition
CITYSCAPES_LABEL_IDS: dict[str, int] = {
    "unlabeled": 0, "ego vehicle": 1, "rectification border": 2, "out of roi": 3, "static": 4, "dynamic": 5,
    "ground": 6, "road": 7, "sidewalk": 8, "parking": 9, "rail track": 10, "building": 11, "wall": 12,
    "fence": 13, "guard rail": 14, "bridge": 15, "tunnel": 16, "pole": 17, "polegroup": 18, "traffic light": 19,
    "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24, "rider": 25, "car": 26,
    "truck": 27, "bus": 28, "caravan": 29, "trailer": 30, "train": 31, "motorcycle": 32, "bicycle": 33,
    "license plate": -1,
}

#: labelId -> trainId for the 19 evaluated classes; every labelId not listed maps to 255 (ignore)
LABEL_ID_TO_TRAIN_ID: dict[int, int] = {CITYSCAPES_LABEL_IDS[name]: i for i, name in enumerate(CITYSCAPES_CLASSES)}

#: the same table as a uint8 lookup array [256]
LABEL_ID_TO_TRAIN_ID_LUT: np.ndarray = lut_from_pairs(LABEL_ID_TO_TRAIN_ID, IGNORE_INDEX)
LABEL_ID_TO_TRAIN_ID_LUT.setflags(write=False)

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"
LAYOUT = "<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png + <root>/gtFine/<split>/<city>/*_gtFine_labelIds.png"


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map Cityscapes labelIds (uint8 [H, W]) to train ids (uint8 [H, W], 255 = ignore)."""
    return LABEL_ID_TO_TRAIN_ID_LUT[np.asarray(label_ids, dtype=np.uint8)]


class CityscapesDataset(PairDataset):
    """Cityscapes fine annotations as :class:`SegSample` (19 train ids, 255 = ignore).

    Args:
        root: the directory holding ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"`` (any sub-directory of ``leftImg8bit/`` is accepted).
    """

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root)
        self.split = split
        image_dir = require_dir(self.root / "leftImg8bit" / split, LAYOUT.replace("<split>", split))
        require_dir(self.root / "gtFine" / split, LAYOUT.replace("<split>", split))
        images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
        if not images:
            raise DatasetError(f"no images found: expected {image_dir}/<city>/*{_IMAGE_SUFFIX}")
        self._items = []
        for image in images:
            city = image.parent.name
            stem = image.name[: -len(_IMAGE_SUFFIX)]
            label = self.root / "gtFine" / split / city / f"{stem}{_LABEL_SUFFIX}"
            self._items.append((image, label, f"{split}/{city}/{stem}"))
        check_pairs([(i, lbl) for i, lbl, _ in self._items], LAYOUT.replace("<split>", split))

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> SegSample:
        return SegSample(image, label_ids_to_train_ids(raw), name)
