"""LostAndFound and Fishyscapes LostAndFound readers (anomaly segmentation, :class:`OodSample`).

LostAndFound (as released by 6d-vision; Cityscapes-like layout)::

    <root>/leftImg8bit/<split>/<sequence>/<sequence>_<seq>_<frame>_leftImg8bit.png
    <root>/gtCoarse/<split>/<sequence>/<sequence>_<seq>_<frame>_gtCoarse_labelIds.png

with ``split`` ``train`` or ``test`` and coarse labelIds 0 = unlabeled (void), 1 = free space (road,
in-distribution), 2 and above = obstacle classes (anomaly; the release uses 2-43). 255 is no LostAndFound labelId
(it is the void value of re-released 0/1/255 labels, which the Fishyscapes reader reads): a label file holding
it is an error naming the file and the pixel count, never silently scored as obstacle.

Fishyscapes LostAndFound (the 100-image validation set; its labels are already 0/1/255). The layout read here
is the common re-release of it as two folders of equally named PNGs::

    <root>/images/<name>.png      (also accepted: <root>/original/<name>.png, .jpg)
    <root>/labels/<name>.png      0 = in-distribution, 1 = anomaly, 255 = void (everything off the road)

Any other label value is an error naming the file, the values and their pixel counts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moose_ros.data.common import (
    OOD_VOID,
    OodSample,
    PairDataset,
    allowed_values,
    check_pairs,
    lut_from_pairs,
    require_dir,
)
from moose_ros.errors import DatasetError

__all__ = ["LAF_TO_OOD_LUT", "FishyscapesLafDataset", "LostAndFoundDataset", "laf_to_ood"]

#: LostAndFound gtCoarse labelId -> ood value (0 void -> 255, 1 road -> 0, 2+ obstacle -> 1)
LAF_TO_OOD_LUT: np.ndarray = np.ones(256, np.uint8)
LAF_TO_OOD_LUT[0] = OOD_VOID
LAF_TO_OOD_LUT[1] = 0
LAF_TO_OOD_LUT.setflags(write=False)

_FS_LUT = lut_from_pairs({0: 0, 1: 1}, OOD_VOID)

_LAF_IMAGE = "_leftImg8bit.png"
_LAF_LABEL = "_gtCoarse_labelIds.png"
LAF_LAYOUT = ("<root>/leftImg8bit/<split>/<sequence>/*_leftImg8bit.png + "
              "<root>/gtCoarse/<split>/<sequence>/*_gtCoarse_labelIds.png")
FS_LAYOUT = "<root>/images/<name>.png (or <root>/original/) + <root>/labels/<name>.png"
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def laf_to_ood(label_ids: np.ndarray) -> np.ndarray:
    """LostAndFound coarse labelIds uint8 [H, W] -> ood uint8 [H, W] (0 road, 1 obstacle, 255 void)."""
    return LAF_TO_OOD_LUT[np.asarray(label_ids, dtype=np.uint8)]


class LostAndFoundDataset(PairDataset):
    """LostAndFound as :class:`OodSample`: road in-distribution, obstacles anomalous, the rest void.

    Args:
        root: directory holding ``leftImg8bit/`` and ``gtCoarse/``.
        split: ``"test"`` (default) or ``"train"``.

    Reading a label file that holds 255 raises :class:`DatasetError` (see the module docstring).
    """

    label_values = allowed_values(range(255))
    label_layout = "LostAndFound gtCoarse labelIds"
    label_meaning = "0 void, 1 road, 2-254 obstacle; 255 is not a labelId, read 0/1/255 labels as fishyscapes"

    def __init__(self, root: str | Path, split: str = "test") -> None:
        self.root = Path(root)
        self.split = split
        layout = LAF_LAYOUT.replace("<split>", split)
        image_dir = require_dir(self.root / "leftImg8bit" / split, layout)
        require_dir(self.root / "gtCoarse" / split, layout)
        images = sorted(image_dir.glob(f"*/*{_LAF_IMAGE}"))
        if not images:
            raise DatasetError(f"no images found: expected {image_dir}/<sequence>/*{_LAF_IMAGE}")
        self._items = []
        for image in images:
            stem = image.name[: -len(_LAF_IMAGE)]
            label = self.root / "gtCoarse" / split / image.parent.name / f"{stem}{_LAF_LABEL}"
            self._items.append((image, label, f"{split}/{image.parent.name}/{stem}"))
        check_pairs(self.files, layout)

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> OodSample:
        return OodSample(image, laf_to_ood(raw), name)


class FishyscapesLafDataset(PairDataset):
    """Fishyscapes LostAndFound (validation) as :class:`OodSample`; see the module docstring for the layout.

    Args:
        root: directory holding ``images/`` (or ``original/``) and ``labels/``.

    Reading a label file with a value other than 0, 1 or 255 raises :class:`DatasetError`.
    """

    label_values = allowed_values((0, 1, 255))
    label_layout = "Fishyscapes LostAndFound label"
    label_meaning = "0 in-distribution, 1 anomaly, 255 void"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.split = None
        image_dir = self.root / "images"
        if not image_dir.is_dir() and (self.root / "original").is_dir():
            image_dir = self.root / "original"
        require_dir(image_dir, FS_LAYOUT)
        label_dir = require_dir(self.root / "labels", FS_LAYOUT)
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
        if not images:
            raise DatasetError(f"no images found: expected {image_dir}/<name>.png")
        self._items = [(img, label_dir / f"{img.stem}.png", img.stem) for img in images]
        check_pairs(self.files, FS_LAYOUT)

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> OodSample:
        return OodSample(image, _FS_LUT[raw], name)
