"""The OoD-table driver end to end on tiny SynthStreet data: trains probe/refit seeds, scores every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_train_common import ood_recipe_and_runs

from moose_ros.data.synth import write_synthstreet
from moose_ros.eval.variants import ABLATION_VARIANTS
from moose_ros.export.onnx_export import operating_point_extra
from moose_ros.model import load_checkpoint
from moose_ros.train.ood_table import METHODS, REGIONS, main

VARIANTS = [v.name for v in ABLATION_VARIANTS]


@pytest.mark.slow
def test_ood_table_trains_seeds_and_reports_every_method(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    recipe, runs = ood_recipe_and_runs(tmp_path)

    ood_val = tmp_path / "ood_val"
    write_synthstreet(ood_val, split="val", count=2, seed=6, height=64, width=128, ood=True, layout="fishyscapes")
    bundle = tmp_path / "models" / "bundled.pt"
    assert main(["--config", str(recipe), "--runs", str(runs), "--seeds", "0", "1", "--train", "--no-progress",
                 "--bundle", str(bundle), "--bundle-seed", "1", "--operating-root", str(ood_val),
                 "--operating-seed", "6"]) == 0

    for seed in (0, 1):
        assert (runs / f"seed{seed}" / "probes.pt").is_file() and (runs / f"seed{seed}" / "refit.pt").is_file()
    table = json.loads((runs / "ood_table.json").read_text())
    assert table["num_images"] == 3 and table["seeds"] == [0, 1]
    assert table["variants"] == VARIANTS
    for method in METHODS:
        for variant in VARIANTS:
            for region in REGIONS:
                for protocol in ("pooled", "per_image"):
                    cell = table["summary"][method][variant][region][protocol]
                    n = 1 if method == "Global" else 2
                    assert len(cell["aupr"]["values"]) == n
                    values = cell["aupr"]["values"] + cell["fpr95"]["values"] + cell["auroc"]["values"]
                    assert all(0.0 <= v <= 100.0 for v in values)
    # the whole image counts the off-road pixels the road protocol leaves void: more pixels, more negatives
    road = table["raw"]["Global"]["entropy"]["road"]["pooled"][0]
    gated = table["raw"]["Global"]["entropy+bs+road"]["image"]["pooled"][0]
    assert gated["num_pixels"] == table["raw"]["Global"]["entropy+bs"]["image"]["pooled"][0]["num_pixels"]
    image = table["raw"]["Global"]["entropy"]["image"]["pooled"][0]
    assert image["num_pixels"] > road["num_pixels"]
    assert image["num_anomaly_pixels"] == road["num_anomaly_pixels"] > 0
    # different seeds give different probes, hence (almost surely) different MOoSe scores
    moose = table["summary"]["MOoSe"]["entropy"]["road"]["pooled"]["aupr"]["values"]
    assert moose[0] != moose[1]
    bundled, meta = load_checkpoint(bundle)
    seed1, _ = load_checkpoint(runs / "seed1" / "probes.pt")
    assert all(torch.equal(a, b) for a, b in zip(bundled.state_dict().values(), seed1.state_dict().values(),
                                                  strict=True))
    cell = meta.metrics["ood_table"]["summary"]["MOoSe"]["max_logit"]["image"]["pooled"]["aupr"]
    # the bundle's SML statistics come from the same training images as the table's
    assert meta.calibration["sml"]["images"] == 8  # make_synth: 8 training scenes
    assert cell["mean"] == pytest.approx(table["summary"]["MOoSe"]["max_logit"]["image"]["pooled"]["aupr"]["mean"])
    assert meta.metrics["ood_table"]["bundled_seed"] == 1 and "probes" in meta.metrics
    # operating points chosen on the OoD validation split, per head set and score, reach the ONNX meta
    assert meta.calibration["operating_split"]["seed"] == 6 and meta.calibration["operating_split"]["images"] == 2
    for heads in ("moose", "global"):
        extra = operating_point_extra(meta.calibration, heads)
        assert set(extra["thresholds"]) == set(VARIANTS) and set(extra["score_ranges"]) == set(VARIANTS)
        assert all(lo < hi for lo, hi in extra["score_ranges"].values())
        # a graph exported with boundary suppression and the road gate reads the +bs / +bs+road points
        graph = operating_point_extra(meta.calibration, heads, ["sml", "entropy", "sml_road"], boundary=True)
        assert graph["thresholds"] == {"sml": extra["thresholds"]["sml+bs"],
                                       "entropy": extra["thresholds"]["entropy+bs"],
                                       "sml_road": extra["thresholds"]["sml+bs+road"]}
    assert operating_point_extra(meta.calibration, "moose") != operating_point_extra(meta.calibration, "global")
    md = (runs / "ood_table.md").read_text()
    assert "| MOoSe | sml+bs+road |" in md and "per_image protocol" in md and "pooled protocol" in md
