"""The base report end to end: a real (tiny) base run's validation log -> curve PNG, per-class IoU, frequency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from test_train_common import make_synth, random_base, write_recipe

from moose_ros.data import open_dataset
from moose_ros.train.config import load_config
from moose_ros.train.report import main, saturation
from moose_ros.train.trainer import train_stage


def test_report_from_a_real_run(tmp_path: Path, capsys) -> None:
    torch.set_num_threads(1)
    data = make_synth(tmp_path / "synth", train=8, val=3)
    recipe = write_recipe(tmp_path / "r.yaml", data, base={"steps": 4, "val_every": 2, "crop": [64, 128]})
    init = random_base(tmp_path / "init.pt")
    train_stage(load_config(recipe), "base", tmp_path / "run", init=init, progress=False)
    log = tmp_path / "run" / "base_log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]

    curve, out = tmp_path / "m" / "curve.png", tmp_path / "m" / "report.json"
    assert main(["--config", str(recipe), "--checkpoint", str(tmp_path / "run" / "base.pt"),
                 "--log", f"{log}:100", "--curve", str(curve), "--json", str(out)]) == 0
    capsys.readouterr()
    with Image.open(curve) as png:
        assert png.format == "PNG" and png.size[0] > 100
    report = json.loads(out.read_text())
    assert [s for s, _ in report["curve"]] == [102, 104]  # the offset of a run continued from a checkpoint
    assert report["saturation"]["gain_last_20pct_points"] == 100.0 * (records[1]["global_miou"]
                                                                      - records[0]["global_miou"])
    # class frequencies counted independently from the label files
    samples = open_dataset("cityscapes", data, "val")
    road = next(c for c in report["classes"] if c["class"] == "road")
    assert road["image_fraction"] == np.mean([0 in np.unique(np.asarray(s.label)) for s in samples])
    assert report["num_images"] == 3 and len(report["classes"]) == 19
    zero = {c["class"] for c in report["classes"] if c["image_fraction"] >= 0.1 and not c["iou"] > 0}
    assert set(report["frequent_classes_at_zero"]) == zero


def test_saturation_reads_the_last_fifth_of_the_steps() -> None:
    curve = [(0, 0.10), (400, 0.40), (800, 0.50), (1200, 0.55), (1600, 0.556)]
    sat = saturation(curve)
    assert sat["last_step"] == 1600 and sat["saturated"]
    assert abs(sat["gain_last_20pct_points"] - 0.6) < 1e-9


def test_missing_log_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    data = make_synth(tmp_path / "synth", train=4, val=1)
    recipe = write_recipe(tmp_path / "r.yaml", data, base={})
    assert main(["--config", str(recipe), "--checkpoint", str(tmp_path / "x.pt"), "--log",
                 str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.jsonl" in err[0]
