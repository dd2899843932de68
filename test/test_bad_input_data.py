"""Damaged dataset files stop `moose eval` and `moose bag from-dataset` with one line and exit 2, nothing written
(issue rows 5, 6, 10, 11), and a bounded fuzz of the dataset readers lets only the project's own errors escape."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_bad_input_common import (
    assert_refused,
    corrupt_png_chunk,
    fs_files,
    laf_labels,
    listing,
    moose,
    passthrough_graph,
    png_bomb,
    set_label_pixels,
    write_ood_layouts,
)

from moose_ros.data import FishyscapesLafDataset, LostAndFoundDataset
from moose_ros.data.imageio import MAX_IMAGE_PIXELS
from moose_ros.errors import DatasetError, MooseError


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset root in both OoD layouts, passthrough ONNX model), written once for the module."""
    base = tmp_path_factory.mktemp("bad_input_data")
    return write_ood_layouts(base / "ood"), passthrough_graph(base / "model.onnx")


@pytest.fixture
def data(clean: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the dataset root in ``tmp_path`` (tests damage it)."""
    return Path(shutil.copytree(clean[0], tmp_path / "ood"))


def _refused_by(tool: str, layout: str, root: Path, model: Path, *words: str) -> None:
    """Run ``tool`` (eval | bag) on ``root`` and assert the refusal and that nothing was written beside it."""
    cwd = root.parent
    before = listing(cwd)
    dataset = "fishyscapes" if layout == "fs" else "lostandfound"
    if tool == "eval":
        args = ["eval", "--model", str(model), "--dataset", dataset, "--root", str(root), "--out", "report",
                "--no-progress", "--no-components"]
    else:
        args = ["bag", "from-dataset", "--dataset", dataset, "--root", str(root), "-o", "out.bag", "--no-progress"]
    assert_refused(moose(args, cwd), *words)
    assert listing(cwd) == before, "a refused run left files behind"


@pytest.mark.parametrize(("tool", "layout", "which"),
                         [("eval", "fs", "label"), ("bag", "fs", "image"), ("bag", "laf", "label"),
                          ("eval", "laf", "image")])
def test_corrupt_png_chunk_is_named(clean, data: Path, tool: str, layout: str, which: str) -> None:
    """Row 5: a PNG whose IDAT chunk is damaged (Pillow: 'broken PNG file' SyntaxError) is named, not a traceback."""
    if layout == "fs":
        images, labels = fs_files(data)
        target = (images if which == "image" else labels)[1]
    else:
        target = laf_labels(data)[0] if which == "label" else sorted((data / "leftImg8bit").rglob("*.png"))[0]
    corrupt_png_chunk(target)
    _refused_by(tool, layout, data, clean[1], str(target), f"cannot decode {which}")


@pytest.mark.parametrize("tool", ["eval", "bag"])
def test_decompression_bomb_is_refused_from_its_header(clean, data: Path, tool: str) -> None:
    """Row 6: a 30000x30000 PNG of a few hundred bytes is refused before decoding, naming file and limit."""
    target = fs_files(data)[0][0]
    png_bomb(target)
    assert target.stat().st_size < 10_000
    _refused_by(tool, "fs", data, clean[1], str(target), "too large", str(MAX_IMAGE_PIXELS))


def test_image_just_over_the_limit_is_refused_by_our_limit(data: Path) -> None:
    """Between our limit and Pillow's own bomb limit the reader's check (width x height) applies."""
    target = fs_files(data)[0][0]
    png_bomb(target, width=8193, height=8192)
    with pytest.raises(DatasetError, match=r"8193x8192 pixels; at most 67108864"):
        FishyscapesLafDataset(data)[0]


@pytest.mark.parametrize("tool", ["eval", "bag"])
def test_fishyscapes_label_outside_0_1_255_is_an_error(clean, data: Path, tool: str) -> None:
    """Row 10: value 7 in a Fishyscapes label is named with its pixel count, not silently made void."""
    target = fs_files(data)[1][1]
    set_label_pixels(target, 7, count=6)
    _refused_by(tool, "fs", data, clean[1], str(target), "0 in-distribution, 1 anomaly, 255 void", "7 (6 px)")


@pytest.mark.parametrize("tool", ["eval", "bag"])
def test_lostandfound_label_255_is_an_error(clean, data: Path, tool: str) -> None:
    """Row 11: 255 in a LostAndFound gtCoarse labelIds file is named, not scored as obstacle."""
    target = laf_labels(data)[1]
    set_label_pixels(target, 255, count=9)
    _refused_by(tool, "laf", data, clean[1], str(target), "255 (9 px)", "LostAndFound")


def test_readers_keep_the_documented_values(data: Path) -> None:
    """The label sets are not too strict: every documented value reads, and maps as the layout says."""
    fs_label = fs_files(data)[1][0]
    laf_label = laf_labels(data)[0]
    for path, values in ((fs_label, (0, 1, 255)), (laf_label, (0, 1, 2, 43, 254))):
        raw = np.zeros((32, 64), np.uint8)
        raw.reshape(-1)[: len(values)] = values
        Image.fromarray(raw).save(path)
    fs = FishyscapesLafDataset(data)[0].ood.reshape(-1)[:3]
    laf = LostAndFoundDataset(data)[0].ood.reshape(-1)[:5]
    assert fs.tolist() == [0, 1, 255]
    assert laf.tolist() == [255, 0, 1, 1, 1]


def _mutations(data: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """``n`` damaged copies of PNG ``data``: truncations, flipped bytes, rewritten IHDR sizes, junk appended."""
    out = []
    ihdr = data.index(b"IHDR")
    for i in range(n):
        blob = bytearray(data)
        kind = i % 4
        if kind == 0:
            blob = blob[: int(rng.integers(0, len(blob)))]
        elif kind == 1:
            for at in rng.integers(0, len(blob), size=int(rng.integers(1, 6))):
                blob[at] = int(rng.integers(0, 256))
        elif kind == 2:
            blob[ihdr + 4 : ihdr + 12] = rng.integers(0, 256, size=8, dtype=np.uint8).tobytes()
        else:
            blob += rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        out.append(bytes(blob))
    return out


@pytest.mark.parametrize("layout", ["fs", "laf"])
def test_fuzz_readers_raise_only_project_errors(data: Path, layout: str) -> None:
    """Bounded fuzz (seeded, 48 damaged files per layout, image and label alternating): a read either returns a
    well-formed sample or raises a MooseError; nothing else escapes."""
    rng = np.random.default_rng(2026)
    if layout == "fs":
        reader, (images, labels) = FishyscapesLafDataset, fs_files(data)
    else:
        reader = LostAndFoundDataset
        images, labels = sorted((data / "leftImg8bit").rglob("*.png")), laf_labels(data)
    originals = {p: p.read_bytes() for p in (images[0], labels[0])}
    outcomes = {"read": 0, "refused": 0}
    for target, original in originals.items():
        for blob in _mutations(original, rng, 24):
            target.write_bytes(blob)
            try:
                sample = reader(data)[0]
            except MooseError:
                outcomes["refused"] += 1
            else:
                assert sample.image.dtype == np.uint8 and sample.image.shape[2] == 3
                assert sample.ood.shape == sample.image.shape[:2]
                assert set(np.unique(sample.ood).tolist()) <= {0, 1, 255}
                outcomes["read"] += 1
        target.write_bytes(original)
    assert outcomes["refused"] > 0


def test_fuzz_label_values_are_accepted_exactly_when_documented(data: Path) -> None:
    """Random label arrays: the Fishyscapes reader accepts exactly those within {0, 1, 255} and otherwise names
    every offending value."""
    rng = np.random.default_rng(11)
    target = fs_files(data)[1][0]
    for trial in range(20):
        choices = np.array([0, 1, 255] if trial % 2 else rng.integers(0, 256, size=4), dtype=np.uint8)
        raw = rng.choice(choices, size=(32, 64)).astype(np.uint8)
        Image.fromarray(raw).save(target)
        bad = sorted(set(np.unique(raw).tolist()) - {0, 1, 255})
        if not bad:
            assert FishyscapesLafDataset(data)[0].ood.tolist() == raw.tolist()
            continue
        with pytest.raises(DatasetError) as info:
            FishyscapesLafDataset(data)[0]
        for value in bad[:8]:
            assert f" {value} ({int((raw == value).sum())} px)" in str(info.value)
