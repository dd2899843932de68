"""SynthStreet: determinism, scene content, OoD masks, layouts read back by the real readers, the CLI tool."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from moose_ros.data import CityscapesDataset, FishyscapesLafDataset, LostAndFoundDataset
from moose_ros.data.synth import render_frame, render_sequence, write_synthstreet
from moose_ros.errors import ConfigError

H, W = 64, 128


def _digest(paths: list[Path]) -> str:
    sha = hashlib.sha256()
    for p in sorted(paths):
        sha.update(p.name.encode())
        sha.update(p.read_bytes())
    return sha.hexdigest()


def test_same_seed_same_bytes_different_seed_differs(tmp_path: Path) -> None:
    a = write_synthstreet(tmp_path / "a", split="train", count=2, seed=3, height=H, width=W)
    b = write_synthstreet(tmp_path / "b", split="train", count=2, seed=3, height=H, width=W)
    c = write_synthstreet(tmp_path / "c", split="train", count=2, seed=4, height=H, width=W)
    assert len(a) == 4
    assert _digest(a) == _digest(b)
    d = write_synthstreet(tmp_path / "d", split="train", count=2, seed=3, height=H, width=W, workers=2)
    assert _digest(d) == _digest(a)  # parallel rendering writes the same bytes
    assert _digest(a) != _digest(c)
    # splits draw different scenes from the same seed
    assert not np.array_equal(render_frame(3, split="train", height=H, width=W).image,
                              render_frame(3, split="val", height=H, width=W).image)


def test_scenes_have_road_and_several_classes() -> None:
    for i in range(6):
        frame = render_frame(11, index=i, height=128, width=256)
        train = frame.train_ids
        present = set(np.unique(train).tolist()) - {255}
        assert 0 in present, f"frame {i} has no road"
        assert (train == 0).mean() > 0.08
        assert len(present) >= 6, f"frame {i} has only classes {sorted(present)}"
        assert not frame.obstacle.any()
        assert frame.image.dtype == np.uint8 and frame.image.shape == (128, 256, 3)
        assert frame.image.std() > 10  # textured, not flat


def test_class_coverage_over_frames() -> None:
    seen: set[int] = set()
    for i in range(12):
        seen |= set(np.unique(render_frame(5, index=i, height=H, width=W).train_ids).tolist())
    # road sidewalk building pole sign vegetation terrain sky car (+ others most of the time)
    assert {0, 1, 2, 5, 8, 9, 10, 13} <= seen


def test_ood_frames_have_anomalies_with_consistent_labels() -> None:
    for i in range(5):
        frame = render_frame(2, split="test", index=i, height=H, width=W, ood=True)
        anomaly = frame.obstacle > 0
        assert anomaly.any(), f"OoD frame {i} has no unknown object"
        assert (frame.label_ids[anomaly] == 0).all()  # unlabeled in Cityscapes terms -> ignored
        assert set(np.unique(frame.obstacle[anomaly]).tolist()) <= set(range(2, 9))
        ood = frame.ood
        assert set(np.unique(ood).tolist()) <= {0, 1, 255}
        np.testing.assert_array_equal(ood == 1, anomaly)
        np.testing.assert_array_equal(ood == 0, frame.label_ids == 7)
        laf = frame.laf_labels
        np.testing.assert_array_equal(laf >= 2, anomaly)
        np.testing.assert_array_equal(laf == 1, frame.label_ids == 7)


def test_every_unknown_object_kind_occurs() -> None:
    from moose_ros.data.synth_objects import ANOMALY_KINDS

    seen: set[int] = set()
    for i in range(20):
        seen |= set(np.unique(render_frame(0, split="test", index=i, height=48, width=96, ood=True).obstacle).tolist())
    assert set(ANOMALY_KINDS.values()) <= seen


def test_cityscapes_layout_round_trip(tmp_path: Path) -> None:
    write_synthstreet(tmp_path, split="val", count=3, seed=1, height=H, width=W)
    ds = CityscapesDataset(tmp_path, "val")
    assert len(ds) == 3
    for i, sample in enumerate(ds):
        frame = render_frame(1, split="val", index=i, height=H, width=W)
        np.testing.assert_array_equal(sample.image, frame.image)
        np.testing.assert_array_equal(sample.label, frame.train_ids)
    assert (tmp_path / "synthstreet_val.json").is_file()


def test_ood_layouts_round_trip(tmp_path: Path) -> None:
    write_synthstreet(tmp_path, split="test", count=3, seed=5, height=H, width=W, ood=True,
                      layout="lostandfound,fishyscapes")
    laf = LostAndFoundDataset(tmp_path, "test")
    fs = FishyscapesLafDataset(tmp_path)
    assert len(laf) == len(fs) == 3
    for i, (a, b) in enumerate(zip(laf, fs, strict=True)):
        frame = render_frame(5, split="test", index=i, height=H, width=W, ood=True)
        np.testing.assert_array_equal(a.image, frame.image)
        np.testing.assert_array_equal(b.image, frame.image)
        # LaF: off-road void, road in-distribution, obstacles anomalous; Fishyscapes encodes the same
        np.testing.assert_array_equal(a.ood, frame.ood)
        np.testing.assert_array_equal(b.ood, frame.ood)
        assert (a.ood == 1).any() and (a.ood == 0).any() and (a.ood == 255).any()


def test_sequence_layout_files(tmp_path: Path) -> None:
    write_synthstreet(tmp_path, split="test", count=2, seed=0, height=32, width=64, ood=True, sequence=3,
                      layout="lostandfound")
    ds = LostAndFoundDataset(tmp_path, "test")
    assert len(ds) == 6
    assert ds.names[:3] == [f"test/synthseq000/synthseq000_000000_{t:06d}" for t in range(3)]
    assert ds.names[3].startswith("test/synthseq001/")


def test_sequence_moves_forward_and_is_deterministic() -> None:
    frames = list(render_sequence(7, 4, height=H, width=W, ood=True))
    again = list(render_sequence(7, 4, height=H, width=W, ood=True))
    assert len(frames) == 4
    for f, g in zip(frames, again, strict=True):
        np.testing.assert_array_equal(f.image, g.image)
    assert not np.array_equal(frames[0].label_ids, frames[-1].label_ids)


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_sequence_approaches_unknown_objects(seed: int) -> None:
    frames = list(render_sequence(seed, 10, height=H, width=W, ood=True, speed_m=1.5))
    assert all(f.obstacle.any() for f in frames)
    # static unknown objects grow, and their ground contact moves down the image, as the camera approaches
    area = [int((f.obstacle > 0).sum()) for f in frames]
    bottom = [int(np.nonzero((f.obstacle > 0).any(axis=1))[0].max()) for f in frames]
    assert area[-1] > 2 * area[0]
    assert bottom[-1] > bottom[0]


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="layout"):
        write_synthstreet("/tmp/unused", layout="kitti", count=0)
    with pytest.raises(ConfigError, match="too small"):
        render_frame(0, height=8, width=8)


def _tool(argv: list[str]) -> int:
    import argparse

    from moose_ros.tools import synth as tool

    parser = argparse.ArgumentParser(prog="moose synth")
    tool.add_arguments(parser)
    return tool.run(parser.parse_args(argv))


def test_synth_tool_writes_layouts(tmp_path: Path) -> None:
    assert _tool([str(tmp_path / "cs"), "--count", "2", "--size", "48x96", "--no-progress"]) == 0
    assert len(CityscapesDataset(tmp_path / "cs", "train")) == 2
    assert _tool([str(tmp_path / "ood"), "--ood", "--count", "2", "--size", "48x96", "--no-progress"]) == 0
    assert len(list((tmp_path / "ood" / "gtCoarse" / "test" / "synth").glob("*_gtCoarse_labelIds.png"))) == 2
    assert len(list((tmp_path / "ood" / "labels").glob("*.png"))) == 2
    with pytest.raises(SystemExit):
        _tool([str(tmp_path / "x"), "--size", "256by512"])
