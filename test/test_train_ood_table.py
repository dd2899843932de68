"""The OoD-table driver end to end on tiny SynthStreet data: trains probe/refit seeds, scores every method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_train_common import make_synth, random_base, write_recipe

from moose_ros.data.synth import write_synthstreet
from moose_ros.model import load_checkpoint
from moose_ros.train.ood_table import METHODS, SCORES, main


@pytest.mark.slow
def test_ood_table_trains_seeds_and_reports_every_method(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = make_synth(tmp_path / "synth")
    ood_root = tmp_path / "ood"
    write_synthstreet(ood_root, split="test", count=3, seed=5, height=64, width=128, ood=True,
                      layout="fishyscapes")
    recipe = write_recipe(tmp_path / "r.yaml", data, probes={"steps": 3, "cache_features": True},
                          refit={"steps": 3, "cache_features": True})
    raw = yaml.safe_load(recipe.read_text())
    raw["data"].update(ood_kind="fishyscapes_laf", ood_root=str(ood_root), ood_seed=5)
    recipe.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    random_base(runs / "base.pt")

    bundle = tmp_path / "models" / "bundled.pt"
    assert main(["--config", str(recipe), "--runs", str(runs), "--seeds", "0", "1", "--train", "--no-progress",
                 "--bundle", str(bundle), "--bundle-seed", "1"]) == 0

    for seed in (0, 1):
        assert (runs / f"seed{seed}" / "probes.pt").is_file() and (runs / f"seed{seed}" / "refit.pt").is_file()
    table = json.loads((runs / "ood_table.json").read_text())
    assert table["num_images"] == 3 and table["seeds"] == [0, 1]
    for method in METHODS:
        for score in SCORES:
            for protocol in ("pooled", "per_image"):
                cell = table["summary"][method][score][protocol]
                n = 1 if method == "Global" else 2
                assert len(cell["aupr"]["values"]) == n
                assert all(0.0 <= v <= 100.0 for v in cell["aupr"]["values"] + cell["fpr95"]["values"])
    # different seeds give different probes, hence (almost surely) different MOoSe scores
    moose = table["summary"]["MOoSe"]["entropy"]["pooled"]["aupr"]["values"]
    assert moose[0] != moose[1]
    bundled, meta = load_checkpoint(bundle)
    seed1, _ = load_checkpoint(runs / "seed1" / "probes.pt")
    assert all(torch.equal(a, b) for a, b in zip(bundled.state_dict().values(), seed1.state_dict().values(),
                                                  strict=True))
    cell = meta.metrics["ood_table"]["summary"]["MOoSe"]["max_logit"]["pooled"]["aupr"]
    assert cell["mean"] == pytest.approx(table["summary"]["MOoSe"]["max_logit"]["pooled"]["aupr"]["mean"])
    assert meta.metrics["ood_table"]["bundled_seed"] == 1 and "probes" in meta.metrics
    assert set(table["disagreement"]) == {"0", "1"}
    assert all(0.0 <= v <= 1.0 for d in table["disagreement"].values() for v in d.values())
    md = (runs / "ood_table.md").read_text()
    assert "| MOoSe |" in md and "per_image protocol" in md
