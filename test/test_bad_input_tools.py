"""`moose export`, `moose eval` and `moose bag` refuse bad paths, options, bags and models with one line and exit 2,
leaving nothing half-written (issue rows 7, 8, 9, 12, 13, 14); a report directory written again holds only the
new report."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_bad_input_common import REPO, assert_refused, listing, moose, passthrough_graph, write_ood_layouts

from moose_ros.bag.from_dataset import write_bag
from moose_ros.bag.messages import IMAGE_TYPE, image_msg, serialize, typestore
from moose_ros.data import FishyscapesLafDataset
from moose_ros.errors import ConfigError
from moose_ros.tools.bag import seconds_to_ns

CHECKPOINT = REPO / "models" / "moose_synthstreet.pt"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real inputs, written once: OoD dataset (both layouts), a valid bag, the passthrough graph and a float-input
    variant of it, and a bag whose camera topic is not a valid ROS 2 name."""
    base = tmp_path_factory.mktemp("bad_input_tools")
    root = write_ood_layouts(base / "ood")
    good_bag = write_bag(FishyscapesLafDataset(root), base / "good.bag").path
    bad_bag = base / "bad_topic.bag"
    from rosbags.rosbag2 import StoragePlugin, Writer

    writer = Writer(bad_bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    conn = writer.add_connection("not a topic!", IMAGE_TYPE, typestore=typestore())
    image = np.zeros((32, 64, 3), np.uint8)
    writer.write(conn, 1_000, serialize(image_msg(image, stamp_ns=1_000, frame_id="camera", encoding="rgb8"),
                                        IMAGE_TYPE))
    writer.close()
    return {"root": root, "bag": good_bag, "bad_bag": bad_bag, "model": passthrough_graph(base / "pt.onnx"),
            "float_model": passthrough_graph(base / "float.onnx", float_input=True)}


def _refused(cwd: Path, args: list[str], *words: str) -> None:
    before = listing(cwd)
    assert_refused(moose(args, cwd), *words)
    assert listing(cwd) == before, "a refused run left files behind"


@pytest.mark.parametrize("target", ["existing_dir", "a_file/model.onnx"])
def test_export_output_that_cannot_be_a_file(tmp_path: Path, target: str) -> None:
    """Row 7: `moose export -o DIR` and `-o FILE/x.onnx` name the option and the path (were tracebacks)."""
    (tmp_path / "existing_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    words = ("existing directory",) if target == "existing_dir" else ("a_file is a file, not a directory",)
    _refused(tmp_path, ["export", str(CHECKPOINT), "-o", target], "-o", *words)


def test_bag_evaluate_out_that_is_a_file(world: dict[str, Path], tmp_path: Path) -> None:
    """Row 7: `moose bag evaluate --out FILE` is refused before the node starts."""
    (tmp_path / "FILE").write_text("keep me")
    _refused(tmp_path, ["bag", "evaluate", str(world["bag"]), "--model", str(world["model"]), "--out", "FILE",
                        "--no-progress"], "--out FILE", "existing file")
    assert (tmp_path / "FILE").read_text() == "keep me"


def test_eval_out_that_is_a_file(world: dict[str, Path], tmp_path: Path) -> None:
    """Row 7 for `moose eval --out`: refused before the model is loaded."""
    (tmp_path / "FILE").write_text("keep me")
    _refused(tmp_path, ["eval", "--model", str(world["model"]), "--dataset", "fishyscapes", "--root",
                        str(world["root"]), "--out", "FILE"], "--out FILE", "existing file")


def test_from_dataset_invalid_topic_writes_no_bag(world: dict[str, Path], tmp_path: Path) -> None:
    """Row 8: an invalid topic name is refused before the bag is written."""
    _refused(tmp_path, ["bag", "from-dataset", "--dataset", "fishyscapes", "--root", str(world["root"]), "-o",
                        "out.bag", "--image-topic", "not a topic!", "--no-progress"],
             "--image-topic 'not a topic!'", "not a valid ROS 2 topic name", "' !'")


def test_bag_evaluate_invalid_topic_in_bag_starts_no_node(world: dict[str, Path], tmp_path: Path) -> None:
    """Row 8: a bag whose camera topic is not a valid name is refused before the node starts; no OUT/logs."""
    _refused(tmp_path, ["bag", "evaluate", str(world["bad_bag"]), "--model", str(world["model"]), "--out", "OUT",
                        "--no-progress", "--startup-timeout", "5"], "'not a topic!'", "cannot be replayed")


@pytest.mark.parametrize(("start", "rate", "words"),
                         [("3e9", "10", ("--start-time '3e9'", "2147483648")),
                          ("2147483647", "0.5", ("frame 1", "2147483647 s"))])
def test_from_dataset_start_time_out_of_int32(world: dict[str, Path], tmp_path: Path, start: str, rate: str,
                                              words: tuple[str, ...]) -> None:
    """Row 9: stamps past int32 seconds (was a struct.error traceback) are refused before writing."""
    _refused(tmp_path, ["bag", "from-dataset", "--dataset", "fishyscapes", "--root", str(world["root"]), "-o",
                        "out.bag", f"--start-time={start}", "--rate", rate, "--no-progress"], *words)


@pytest.mark.parametrize(("text", "words"), [("-1", "--start-time '-1'"), ("soon", "not a number of seconds"),
                                             ("inf", "2147483648"), ("2147483648", "2147483648")])
def test_start_time_parser_names_the_range(text: str, words: str) -> None:
    """Row 9 on the real parser (pure parsing): negative, non-numeric, infinite and past-int32 starts."""
    with pytest.raises(ConfigError, match=re.escape(words)):
        seconds_to_ns(text)
    assert seconds_to_ns("2147483647.999999999") == 2147483647_999999999


@pytest.mark.parametrize(("size", "words"), [("abc", ("--input-size", "HxW", "'abc'")),
                                             ("64x128", ("--input-size '64x128'", "applies to checkpoints"))])
def test_eval_input_size_with_onnx_is_not_ignored(world: dict[str, Path], tmp_path: Path, size: str,
                                                  words: tuple[str, ...]) -> None:
    """Row 12: --input-size with an ONNX graph was silently ignored."""
    _refused(tmp_path, ["eval", "--model", str(world["model"]), "--dataset", "fishyscapes", "--root",
                        str(world["root"]), "--out", "report", "--input-size", size, "--no-progress"], *words)


def test_eval_out_reused_holds_only_the_new_report(world: dict[str, Path], tmp_path: Path) -> None:
    """Row 13: a second run into the same --out replaces the report whole (no stale gallery image), leaves no
    temporary directory, and a directory holding foreign files is refused with those files untouched."""
    args = ["eval", "--model", str(world["model"]), "--dataset", "fishyscapes", "--root", str(world["root"]),
            "--out", "report", "--no-progress", "--no-components"]
    first = moose([*args, "--gallery", "2"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "report" / "gallery").iterdir()) == ["000.png", "001.png"]
    second = moose([*args, "--gallery", "1"], tmp_path)
    assert second.returncode == 0, second.stderr
    assert listing(tmp_path) == ["report", "report/gallery", "report/gallery/000.png", "report/pr_curves.png",
                                 "report/report.json", "report/report.md"]
    (tmp_path / "report" / "notes.txt").write_text("mine")
    _refused(tmp_path, [*args, "--gallery", "1"], "--out report", "notes.txt", "does not write")
    assert (tmp_path / "report" / "notes.txt").read_text() == "mine"


def test_bag_evaluate_float_input_model_is_refused_at_once(world: dict[str, Path], tmp_path: Path) -> None:
    """Row 14: a model whose input is float used to replay for 34 s and report "no ground truth in the bag"."""
    _refused(tmp_path, ["bag", "evaluate", str(world["bag"]), "--model", str(world["float_model"]), "--out", "OUT",
                        "--no-progress"], str(world["float_model"]), "float", "expected uint8 [N, H, W, 3]")
