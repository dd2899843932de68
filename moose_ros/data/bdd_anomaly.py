"""BDD-Anomaly reader (BDD100K semantic segmentation with motorcycle and train held out as anomalies).

Layout (the BDD100K ``seg`` release, split as for BDD-Anomaly: images showing a motorcycle or a train form
``test``, the rest ``train``/``val``)::

    <root>/seg/images/<split>/<name>.jpg            (or .png)
    <root>/seg/labels/<split>/<name>_train_id.png   (or <name>.png)

Labels hold the 19 Cityscapes-ordered train ids (255 = ignore); BDD-Anomaly's anomaly classes are train (16)
and motorcycle (17).

- ``train`` / ``val``: :class:`SegSample`; 16 and 17 become 255 (never learnt).
- ``test``: :class:`OodSample`; 16/17 -> 1, 255 -> void, every other class -> 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moose_ros.data.common import (
    IGNORE_INDEX,
    OOD_VOID,
    OodSample,
    PairDataset,
    SegSample,
    check_pairs,
    check_target,
    require_dir,
)
from moose_ros.errors import DatasetError

__all__ = ["BDD_ANOMALY_TRAIN_IDS", "BddAnomalyDataset"]

#: train ids that BDD-Anomaly treats as unknown (train, motorcycle)
BDD_ANOMALY_TRAIN_IDS: tuple[int, ...] = (16, 17)

LAYOUT = "<root>/seg/images/<split>/<name>.jpg + <root>/seg/labels/<split>/<name>_train_id.png (or <name>.png)"
_IMAGE_EXTS = (".jpg", ".jpeg", ".png")

_SEG_LUT = np.arange(256, dtype=np.uint8)
_SEG_LUT[19:] = IGNORE_INDEX
_SEG_LUT[list(BDD_ANOMALY_TRAIN_IDS)] = IGNORE_INDEX
_OOD_LUT = np.full(256, OOD_VOID, np.uint8)
_OOD_LUT[:19] = 0
_OOD_LUT[list(BDD_ANOMALY_TRAIN_IDS)] = 1


class BddAnomalyDataset(PairDataset):
    """BDD-Anomaly: :class:`SegSample` for ``train``/``val``, :class:`OodSample` for ``test``.

    Args:
        root: directory holding ``seg/`` (``root`` may also be the ``seg`` folder itself).
        split: ``"train"``, ``"val"`` or ``"test"``.
        target: ``"auto"`` (the split's kind), ``"segmentation"`` or ``"ood"`` for any split.
    """

    def __init__(self, root: str | Path, split: str = "test", *, target: str = "auto") -> None:
        self.root = Path(root)
        self.split = split
        self.target = check_target(target, split)
        seg = self.root / "seg" if (self.root / "seg").is_dir() else self.root
        layout = LAYOUT.replace("<split>", split)
        image_dir = require_dir(seg / "images" / split, layout)
        label_dir = require_dir(seg / "labels" / split, layout)
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
        if not images:
            raise DatasetError(f"no images found: expected {image_dir}/<name>.jpg")
        self._items = []
        for image in images:
            label = label_dir / f"{image.stem}_train_id.png"
            if not label.is_file() and (label_dir / f"{image.stem}.png").is_file():
                label = label_dir / f"{image.stem}.png"
            self._items.append((image, label, f"{split}/{image.stem}"))
        check_pairs(self.files, layout)

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> SegSample | OodSample:
        if self.target == "ood":
            return OodSample(image, _OOD_LUT[raw], name)
        return SegSample(image, _SEG_LUT[raw], name)
