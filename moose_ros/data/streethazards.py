"""StreetHazards reader (Hendrycks et al., CAOS benchmark).

Layout of the released tarballs (``streethazards_train.tar``, ``streethazards_test.tar``) under one root::

    <root>/train/train.odgt  <root>/train/validation.odgt  <root>/train/images/training/...  annotations/...
    <root>/test/test.odgt    <root>/test/images/test/t5/*.png  <root>/test/annotations/test/t5/*.png

An ``.odgt`` list is either one JSON array or JSON lines; each entry has ``fpath_img`` and ``fpath_segm``
relative to the split folder (``train/`` or ``test/``) — paths relative to the list's folder or the root are
accepted too. The annotation PNGs store class + 1: 1 unlabeled, 2 building, 3 fence, 4 other, 5 pedestrian,
6 pole, 7 road line, 8 road, 9 sidewalk, 10 vegetation, 11 car, 12 wall, 13 traffic sign, 14 anomaly.

- ``train`` / ``val``: :class:`SegSample` with the 12 known classes as train ids 0..11
  (:data:`STREETHAZARDS_CLASSES`); unlabeled and anomaly become 255.
- ``test``: :class:`OodSample`, anomaly (14) = 1 and every other pixel in-distribution (0), as the benchmark's
  per-image protocol counts them; ``unlabeled_void=True`` makes unlabeled pixels void (255) instead.
"""

from __future__ import annotations

import json
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
    lut_from_pairs,
)
from moose_ros.errors import DatasetError

__all__ = ["STREETHAZARDS_CLASSES", "STREETHAZARDS_COLORS", "StreetHazardsDataset"]

#: the 12 known classes, indexed by train id (raw annotation value - 2)
STREETHAZARDS_CLASSES: tuple[str, ...] = (
    "building", "fence", "other", "pedestrian", "pole", "road line", "road", "sidewalk", "vegetation", "car",
    "wall", "traffic sign",
)
#: RGB palette of the 12 known classes (the dataset's own colours)
STREETHAZARDS_COLORS: tuple[tuple[int, int, int], ...] = (
    (70, 70, 70), (190, 153, 153), (250, 170, 160), (220, 20, 60), (153, 153, 153), (157, 234, 50),
    (128, 64, 128), (244, 35, 232), (107, 142, 35), (0, 0, 142), (102, 102, 156), (220, 220, 0),
)
RAW_UNLABELED = 1
RAW_ANOMALY = 14

_SEG_LUT = lut_from_pairs({raw: raw - 2 for raw in range(2, 14)}, IGNORE_INDEX)
_SPLITS = {"train": ("train", "train.odgt"), "val": ("train", "validation.odgt"), "test": ("test", "test.odgt")}
LAYOUT = "<root>/{train/train.odgt, train/validation.odgt, test/test.odgt} listing fpath_img/fpath_segm"


def _read_odgt(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        entries = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path} is neither a JSON array nor JSON lines: {err}") from err
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "fpath_img" not in entry or "fpath_segm" not in entry:
            raise DatasetError(f"{path} entry {i} lacks fpath_img/fpath_segm: {str(entry)[:120]}")
    return entries


class StreetHazardsDataset(PairDataset):
    """StreetHazards: :class:`SegSample` for ``train``/``val``, :class:`OodSample` for ``test``.

    Args:
        root: directory holding ``train/`` and/or ``test/`` as extracted from the tarballs.
        split: ``"train"``, ``"val"`` or ``"test"``.
        unlabeled_void: for ``test``, mark unlabeled pixels void (255) instead of in-distribution.
        target: ``"auto"`` (the split's kind), ``"segmentation"`` or ``"ood"`` for any split (e.g. the test
            split's segmentation labels for mIoU).
    """

    def __init__(self, root: str | Path, split: str = "test", *, unlabeled_void: bool = False,
                 target: str = "auto") -> None:
        self.root = Path(root)
        self.split = split
        self.unlabeled_void = unlabeled_void
        self.target = check_target(target, split)
        if split not in _SPLITS:
            raise DatasetError(f"StreetHazards split {split!r} unknown; choose train, val or test")
        folder, list_name = _SPLITS[split]
        candidates = [self.root / folder / list_name, self.root / list_name]
        odgt = next((p for p in candidates if p.is_file()), None)
        if odgt is None:
            raise DatasetError(f"StreetHazards list not found: expected {candidates[0]} (or {candidates[1]}); "
                               f"layout {LAYOUT}")
        bases = [odgt.parent, self.root / folder, self.root]
        self._items = []
        for entry in _read_odgt(odgt):
            img_rel, seg_rel = str(entry["fpath_img"]), str(entry["fpath_segm"])
            base = next((b for b in bases if (b / img_rel).is_file()), bases[0])
            name = f"{split}/{Path(img_rel).with_suffix('').as_posix()}"
            self._items.append((base / img_rel, base / seg_rel, name))
        if not self._items:
            raise DatasetError(f"StreetHazards list {odgt} is empty")
        self._items.sort(key=lambda item: item[2])
        check_pairs(self.files, f"{odgt} entries relative to {bases[0]}")
        ood = np.zeros(256, np.uint8)
        ood[RAW_ANOMALY] = 1
        if unlabeled_void:
            ood[RAW_UNLABELED] = OOD_VOID
        ood[0] = OOD_VOID  # value 0 is not a class of the dataset
        self._ood_lut = ood

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> SegSample | OodSample:
        if self.target == "ood":
            return OodSample(image, self._ood_lut[raw], name)
        return SegSample(image, _SEG_LUT[raw], name)
