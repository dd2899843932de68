"""Open a dataset reader by name: :func:`open_dataset`."""

from __future__ import annotations

from pathlib import Path

from moose_ros.data.bdd_anomaly import BddAnomalyDataset
from moose_ros.data.cityscapes import CityscapesDataset
from moose_ros.data.common import PairDataset
from moose_ros.data.lostandfound import FishyscapesLafDataset, LostAndFoundDataset
from moose_ros.data.road_anomaly import RoadAnomalyDataset
from moose_ros.data.streethazards import StreetHazardsDataset
from moose_ros.errors import ConfigError

__all__ = ["DATASET_KINDS", "dataset_kind", "open_dataset"]

#: canonical kind -> (reader, takes a split)
_READERS: dict[str, tuple[type[PairDataset], bool]] = {
    "cityscapes": (CityscapesDataset, True),
    "streethazards": (StreetHazardsDataset, True),
    "bdd_anomaly": (BddAnomalyDataset, True),
    "lostandfound": (LostAndFoundDataset, True),
    "fishyscapes_laf": (FishyscapesLafDataset, False),
    "road_anomaly": (RoadAnomalyDataset, False),
}
_ALIASES = {
    "synthstreet": "cityscapes", "laf": "lostandfound", "lost_and_found": "lostandfound", "fs_laf": "fishyscapes_laf",
    "fishyscapes": "fishyscapes_laf", "fishyscapes_lostandfound": "fishyscapes_laf", "roadanomaly": "road_anomaly",
    "bdd": "bdd_anomaly", "bddanomaly": "bdd_anomaly", "street_hazards": "streethazards",
}
DATASET_KINDS: tuple[str, ...] = tuple(sorted(_READERS))


def dataset_kind(kind: str) -> str | None:
    """The canonical name of dataset ``kind`` (aliases, case, ``-`` / ``_`` accepted), or None if unknown."""
    key = kind.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    return key if key in _READERS else None


def open_dataset(kind: str, root: str | Path, split: str | None = None) -> PairDataset:
    """The reader for ``kind`` (see :data:`DATASET_KINDS`; ``-`` and ``_`` are interchangeable) at ``root``.

    ``split`` None takes the reader's default (Cityscapes ``train``; StreetHazards, BDD-Anomaly and
    LostAndFound ``test``). Fishyscapes LaF and RoadAnomaly are single evaluation sets: they accept only
    None, ``"val"`` or ``"test"``.
    """
    key = dataset_kind(kind)
    if key is None:
        raise ConfigError(f"unknown dataset kind {kind!r}; choose from {', '.join(DATASET_KINDS)}")
    reader, has_split = _READERS[key]
    if has_split:
        return reader(root) if split is None else reader(root, split)
    if split not in (None, "val", "test"):
        raise ConfigError(f"dataset {key} has a single evaluation split; got split {split!r}")
    return reader(root)
