"""RoadAnomaly reader (Lis et al., 60 web images of unusual objects on roads).

Layout of the released archive (``RoadAnomaly_jpg``)::

    <root>/frame_list.json                               JSON array of image file names
    <root>/frames/<name>.jpg
    <root>/frames/<name>.labels/labels_semantic.png      0 = in-distribution, 2 = anomaly

Other label values are treated as void (255).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moose_ros.data.common import OOD_VOID, OodSample, PairDataset, check_pairs, lut_from_pairs
from moose_ros.errors import DatasetError

__all__ = ["RoadAnomalyDataset"]

LAYOUT = "<root>/frame_list.json + <root>/frames/<name>.jpg + <root>/frames/<name>.labels/labels_semantic.png"
_LUT = lut_from_pairs({0: 0, 2: 1}, OOD_VOID)


class RoadAnomalyDataset(PairDataset):
    """RoadAnomaly as :class:`OodSample` (order: sorted image names)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.split = None
        listing = self.root / "frame_list.json"
        if not listing.is_file():
            raise DatasetError(f"RoadAnomaly list not found: {listing}; expected layout {LAYOUT}")
        try:
            names = json.loads(listing.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DatasetError(f"{listing} is not valid JSON: {err}") from err
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise DatasetError(f"{listing} must be a non-empty JSON array of image file names")
        frames = self.root / "frames"
        self._items = []
        for name in sorted(names):
            image = frames / name
            stem = Path(name).stem
            self._items.append((image, frames / f"{stem}.labels" / "labels_semantic.png", stem))
        check_pairs(self.files, LAYOUT)

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> OodSample:
        return OodSample(image, _LUT[raw], name)
