"""Cityscapes reader on a fixture written in the official layout (leftImg8bit + gtFine labelIds)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moose_ros.data import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_COLORS,
    LABEL_ID_TO_TRAIN_ID,
    CityscapesDataset,
    SegSample,
    label_ids_to_train_ids,
)
from moose_ros.errors import DatasetError


def write_cityscapes(root: Path, split: str, frames: dict[str, np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    """Write images and labelIds PNGs for ``{"<city>_<seq>_<frame>": labelIds}``; returns the images."""
    rng = np.random.default_rng(seed)
    images = {}
    for stem, label_ids in frames.items():
        city = stem.split("_")[0]
        image = rng.integers(0, 256, (*label_ids.shape, 3), dtype=np.uint8)
        img_path = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
        lbl_path = root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        lbl_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(img_path)
        Image.fromarray(label_ids).save(lbl_path)
        images[stem] = image
    return images


def test_constants_match_the_official_table() -> None:
    assert len(CITYSCAPES_CLASSES) == 19 and len(CITYSCAPES_COLORS) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_COLORS[0] == (128, 64, 128)
    assert CITYSCAPES_CLASSES[13] == "car" and CITYSCAPES_COLORS[13] == (0, 0, 142)
    assert CITYSCAPES_COLORS[10] == (70, 130, 180)  # sky
    assert sorted(LABEL_ID_TO_TRAIN_ID.values()) == list(range(19))
    # the 19 evaluated labelIds, in train-id order
    assert list(LABEL_ID_TO_TRAIN_ID) == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def test_label_ids_map_to_train_ids() -> None:
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    train = label_ids_to_train_ids(ids)
    assert train.dtype == np.uint8 and train.shape == ids.shape
    flat = train.ravel()
    assert flat[7] == 0 and flat[8] == 1 and flat[26] == 13 and flat[33] == 18 and flat[23] == 10
    for ignored in (0, 1, 2, 3, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 255):
        assert flat[ignored] == 255


def test_reader_decodes_fixture(tmp_path: Path) -> None:
    a = np.zeros((8, 12), np.uint8)
    a[:, :4] = 7  # road
    a[:, 4:8] = 26  # car
    a[:2] = 23  # sky
    b = np.full((8, 12), 24, np.uint8)
    b[0, 0] = 29  # caravan: ignored
    images = write_cityscapes(tmp_path, "val", {"munster_000001_000019": a, "aachen_000000_000019": b})
    ds = CityscapesDataset(tmp_path, "val")
    assert len(ds) == 2
    assert ds.names == ["val/aachen/aachen_000000_000019", "val/munster/munster_000001_000019"]  # sorted
    sample = ds[1]
    assert isinstance(sample, SegSample)
    assert sample.image.dtype == np.uint8 and sample.image.shape == (8, 12, 3)
    np.testing.assert_array_equal(sample.image, images["munster_000001_000019"])
    by_hand = {7: 0, 26: 13, 23: 10, 0: 255}  # road, car, sky, unlabeled
    expect = np.vectorize(by_hand.__getitem__)(a).astype(np.uint8)
    np.testing.assert_array_equal(sample.label, expect)
    first = ds[0]
    assert first.label[0, 0] == 255 and (first.label.ravel()[1:] == 11).all()
    assert [s.name for s in ds] == ds.names
    assert len(ds[0:2]) == 2 and ds[-1].name == ds.names[-1]
    with pytest.raises(IndexError):
        ds[2]


def test_wrong_root_names_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"leftImg8bit/train/<city>/\*_leftImg8bit.png"):
        CityscapesDataset(tmp_path / "nowhere", "train")


def test_missing_label_file_is_named(tmp_path: Path) -> None:
    write_cityscapes(tmp_path, "train", {"bonn_000001_000019": np.zeros((4, 4), np.uint8),
                                         "bonn_000002_000019": np.zeros((4, 4), np.uint8)})
    missing = tmp_path / "gtFine" / "train" / "bonn" / "bonn_000002_000019_gtFine_labelIds.png"
    missing.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(missing))):
        CityscapesDataset(tmp_path, "train")


def test_empty_split_and_size_mismatch(tmp_path: Path) -> None:
    (tmp_path / "leftImg8bit" / "val").mkdir(parents=True)
    (tmp_path / "gtFine" / "val").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images found"):
        CityscapesDataset(tmp_path, "val")
    write_cityscapes(tmp_path, "train", {"ulm_000001_000019": np.zeros((4, 6), np.uint8)})
    Image.fromarray(np.zeros((5, 6), np.uint8)).save(
        tmp_path / "gtFine" / "train" / "ulm" / "ulm_000001_000019_gtFine_labelIds.png")
    with pytest.raises(DatasetError, match="its label is"):
        CityscapesDataset(tmp_path, "train")[0]
