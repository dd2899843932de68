"""OoD and segmentation readers on tiny fixtures written in each dataset's released layout and encoding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moose_ros.data import (
    DATASET_KINDS,
    BddAnomalyDataset,
    CityscapesDataset,
    FishyscapesLafDataset,
    LostAndFoundDataset,
    OodSample,
    RoadAnomalyDataset,
    SegSample,
    StreetHazardsDataset,
    iter_batches,
    open_dataset,
)
from moose_ros.errors import ConfigError, DatasetError


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _image(seed: int, shape: tuple[int, int] = (6, 8)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


# ---------------------------------------------------------------- LostAndFound
def _laf(root: Path) -> np.ndarray:
    raw = np.zeros((6, 8), np.uint8)
    raw[3:, :] = 1  # free space
    raw[4, 2:4] = 2  # obstacle class 2
    raw[5, 5] = 3  # obstacle class 3
    raw[5, 6] = 42
    stem = "02_Hanns_Klemm_Str_44_000000_000080"
    _save(root / "leftImg8bit" / "test" / "02_Hanns_Klemm_Str_44" / f"{stem}_leftImg8bit.png", _image(1))
    _save(root / "gtCoarse" / "test" / "02_Hanns_Klemm_Str_44" / f"{stem}_gtCoarse_labelIds.png", raw)
    stem2 = "01_Hanns_Klemm_Str_45_000001_000120"
    _save(root / "leftImg8bit" / "test" / "01_Hanns_Klemm_Str_45" / f"{stem2}_leftImg8bit.png", _image(2))
    _save(root / "gtCoarse" / "test" / "01_Hanns_Klemm_Str_45" / f"{stem2}_gtCoarse_labelIds.png", raw)
    return raw


def test_lostandfound_decodes_void_road_obstacles(tmp_path: Path) -> None:
    raw = _laf(tmp_path)
    ds = LostAndFoundDataset(tmp_path, "test")
    assert len(ds) == 2 and ds.names[0].startswith("test/01_Hanns_Klemm_Str_45/")
    sample = ds[1]
    assert isinstance(sample, OodSample)
    np.testing.assert_array_equal(sample.image, _image(1))
    ood = sample.ood
    assert (ood[:3] == 255).all()  # 0 -> void
    assert ood[3, 0] == 0 and ood[4, 0] == 0  # 1 -> in-distribution
    assert ood[4, 2] == 1 and ood[4, 3] == 1 and ood[5, 5] == 1 and ood[5, 6] == 1  # 2, 3, 42 -> anomaly
    assert int((ood == 1).sum()) == int((raw >= 2).sum())


def test_lostandfound_errors_name_paths(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape("leftImg8bit/test/<sequence>/*_leftImg8bit.png")):
        LostAndFoundDataset(tmp_path, "test")
    _laf(tmp_path)
    label = next((tmp_path / "gtCoarse" / "test").glob("*/02_*_gtCoarse_labelIds.png"))
    label.unlink()
    with pytest.raises(DatasetError, match=re.escape(str(label))):
        LostAndFoundDataset(tmp_path, "test")


# ---------------------------------------------------------------- Fishyscapes LaF
def test_fishyscapes_laf(tmp_path: Path) -> None:
    lab = np.full((6, 8), 255, np.uint8)
    lab[3:] = 0
    lab[4, 1:3] = 1
    lab[5, 7] = 7  # not a Fishyscapes value: an error naming the file, the value and its pixel count
    for i in (1, 0):
        _save(tmp_path / "images" / f"{i}.png", _image(10 + i))
        _save(tmp_path / "labels" / f"{i}.png", lab)
    ds = FishyscapesLafDataset(tmp_path)
    assert ds.names == ["0", "1"]
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path / 'labels' / '0.png'} holds values outside") +
                       ".*: 7 \\(1 px\\)"):
        ds[0]
    lab[5, 7] = 255
    _save(tmp_path / "labels" / "0.png", lab)
    s = ds[0]
    np.testing.assert_array_equal(s.image, _image(10))
    np.testing.assert_array_equal(s.ood, lab)
    (tmp_path / "labels" / "1.png").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "labels" / "1.png"))):
        FishyscapesLafDataset(tmp_path)
    with pytest.raises(DatasetError, match=re.escape("<root>/images/<name>.png")):
        FishyscapesLafDataset(tmp_path / "missing")


# ---------------------------------------------------------------- StreetHazards
def _streethazards(root: Path, json_lines: bool) -> np.ndarray:
    raw = np.full((6, 8), 8, np.uint8)  # road (raw 8 = class 7 + 1)
    raw[0] = 1  # unlabeled
    raw[1] = 2  # building
    raw[2, :2] = 13  # traffic sign
    raw[5, 3:5] = 14  # anomaly
    entries = []
    for town, idx in (("t5", 300), ("t5", 12)):
        rel_img, rel_seg = f"images/test/{town}/{idx}.png", f"annotations/test/{town}/{idx}.png"
        _save(root / "test" / rel_img, _image(idx))
        _save(root / "test" / rel_seg, raw)
        entries.append({"dbName": "StreetHazards", "width": 8, "height": 6, "fpath_img": rel_img,
                        "fpath_segm": rel_seg})
    text = "\n".join(json.dumps(e) for e in entries) if json_lines else json.dumps(entries)
    (root / "test" / "test.odgt").write_text(text)
    # a training list too (segmentation samples)
    _save(root / "train" / "images/training/t1-3/0.png", _image(0))
    _save(root / "train" / "annotations/training/t1-3/0.png", raw)
    (root / "train" / "train.odgt").write_text(json.dumps({"fpath_img": "images/training/t1-3/0.png",
                                                           "fpath_segm": "annotations/training/t1-3/0.png"}))
    return raw


@pytest.mark.parametrize("json_lines", [True, False])
def test_streethazards_test_and_train(tmp_path: Path, json_lines: bool) -> None:
    _streethazards(tmp_path, json_lines)
    ds = StreetHazardsDataset(tmp_path, "test")
    assert ds.names == ["test/images/test/t5/12", "test/images/test/t5/300"]
    s = ds[1]
    assert isinstance(s, OodSample)
    np.testing.assert_array_equal(s.image, _image(300))
    assert s.ood[5, 3] == 1 and s.ood[5, 4] == 1 and int(s.ood.sum()) == 2
    assert s.ood[0, 0] == 0  # unlabeled counts as in-distribution (benchmark protocol)
    assert StreetHazardsDataset(tmp_path, "test", unlabeled_void=True)[1].ood[0, 0] == 255
    seg = StreetHazardsDataset(tmp_path, "train")[0]
    assert isinstance(seg, SegSample)
    assert seg.label[0, 0] == 255 and seg.label[1, 0] == 0 and seg.label[2, 0] == 11 and seg.label[3, 0] == 6
    assert seg.label[5, 3] == 255  # anomaly is not a training class
    test_seg = StreetHazardsDataset(tmp_path, "test", target="segmentation")[1]
    assert isinstance(test_seg, SegSample) and test_seg.label[3, 0] == 6 and test_seg.label[5, 3] == 255
    with pytest.raises(DatasetError, match="target"):
        StreetHazardsDataset(tmp_path, "test", target="both")


def test_streethazards_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "train" / "validation.odgt"))):
        StreetHazardsDataset(tmp_path, "val")
    _streethazards(tmp_path, True)
    (tmp_path / "test" / "annotations/test/t5/12.png").unlink()
    with pytest.raises(DatasetError, match=re.escape("annotations/test/t5/12.png")):
        StreetHazardsDataset(tmp_path, "test")
    with pytest.raises(DatasetError, match="split"):
        StreetHazardsDataset(tmp_path, "extra")


# ---------------------------------------------------------------- BDD-Anomaly
def test_bdd_anomaly(tmp_path: Path) -> None:
    lab = np.zeros((6, 8), np.uint8)
    lab[0] = 10  # sky
    lab[1] = 255
    lab[2, :2] = 16  # train
    lab[3, :3] = 17  # motorcycle
    lab[4] = 18  # bicycle stays known
    for split in ("train", "test"):
        img = tmp_path / "seg" / "images" / split / "7d2f7975-e0c1c5a7.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_image(3)).save(img, quality=95)
        _save(tmp_path / "seg" / "labels" / split / "7d2f7975-e0c1c5a7_train_id.png", lab)
    test = BddAnomalyDataset(tmp_path, "test")[0]
    assert isinstance(test, OodSample) and test.image.shape == (6, 8, 3)
    assert (test.ood[1] == 255).all() and (test.ood[0] == 0).all() and (test.ood[4] == 0).all()
    assert int((test.ood == 1).sum()) == 5
    train = BddAnomalyDataset(tmp_path, "train")[0]
    assert isinstance(train, SegSample)
    assert (train.label[2, :2] == 255).all() and (train.label[3, :3] == 255).all() and train.label[4, 0] == 18
    assert isinstance(BddAnomalyDataset(tmp_path, "test", target="segmentation")[0], SegSample)
    with pytest.raises(DatasetError, match=re.escape("seg/images/val")):
        BddAnomalyDataset(tmp_path, "val")


# ---------------------------------------------------------------- RoadAnomaly
def test_road_anomaly(tmp_path: Path) -> None:
    lab = np.zeros((6, 8), np.uint8)
    lab[2:4, 2:5] = 2
    lab[0, 0] = 1  # not a documented value -> void
    names = ["animals02_cows.jpg", "animals01_Guiness.jpg"]
    (tmp_path / "frames").mkdir()
    for i, name in enumerate(names):
        Image.fromarray(_image(20 + i)).save(tmp_path / "frames" / name, quality=95)
        _save(tmp_path / "frames" / f"{Path(name).stem}.labels" / "labels_semantic.png", lab)
    (tmp_path / "frame_list.json").write_text(json.dumps(names))
    ds = RoadAnomalyDataset(tmp_path)
    assert ds.names == ["animals01_Guiness", "animals02_cows"]
    s = ds[0]
    assert int((s.ood == 1).sum()) == 6 and s.ood[0, 0] == 255 and s.ood[5, 7] == 0
    (tmp_path / "frames" / "animals02_cows.labels" / "labels_semantic.png").unlink()
    with pytest.raises(DatasetError, match=re.escape("animals02_cows.labels/labels_semantic.png")):
        RoadAnomalyDataset(tmp_path)
    with pytest.raises(DatasetError, match=re.escape("frame_list.json")):
        RoadAnomalyDataset(tmp_path / "frames")


# ---------------------------------------------------------------- registry and batching
def test_open_dataset_by_name(tmp_path: Path) -> None:
    _laf(tmp_path)
    assert isinstance(open_dataset("LostAndFound", tmp_path), LostAndFoundDataset)
    assert isinstance(open_dataset("laf", tmp_path, "test"), LostAndFoundDataset)
    assert set(DATASET_KINDS) == {"cityscapes", "streethazards", "bdd_anomaly", "lostandfound", "fishyscapes_laf",
                                  "road_anomaly"}
    with pytest.raises(ConfigError, match="unknown dataset kind"):
        open_dataset("kitti", tmp_path)
    with pytest.raises(ConfigError, match="single evaluation split"):
        open_dataset("road-anomaly", tmp_path, "train")
    with pytest.raises(DatasetError):
        open_dataset("cityscapes", tmp_path, "val")


def test_iter_batches_crops_and_is_seeded(tmp_path: Path) -> None:
    for i in range(5):
        stem = f"synth_{i:06d}_000019"
        _save(tmp_path / "leftImg8bit" / "train" / "synth" / f"{stem}_leftImg8bit.png", _image(i, (10, 12)))
        _save(tmp_path / "gtFine" / "train" / "synth" / f"{stem}_gtFine_labelIds.png", np.full((10, 12), 7, np.uint8))
    ds = CityscapesDataset(tmp_path, "train")
    batches = list(iter_batches(ds, 2, seed=1, crop=(8, 16), flip=True))
    assert [b[0].shape for b in batches] == [(2, 8, 16, 3), (2, 8, 16, 3), (1, 8, 16, 3)]
    labels = batches[0][1]
    assert labels.dtype == np.uint8 and set(np.unique(labels).tolist()) == {0, 255}  # padded with ignore
    again = list(iter_batches(ds, 2, seed=1, crop=(8, 16), flip=True))
    assert [b[2] for b in again] == [b[2] for b in batches]
    assert sorted(n for b in batches for n in b[2]) == ds.names
    assert len(list(iter_batches(ds, 2, drop_last=True, shuffle=False))) == 2


def test_data_package_imports_without_torch_or_rclpy() -> None:
    import subprocess
    import sys

    code = ("import sys, moose_ros.data, moose_ros.data.synth, moose_ros.tools.synth; "
            "bad = [m for m in ('torch', 'rclpy', 'onnxruntime') if m in sys.modules]; print(bad); "
            "raise SystemExit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
