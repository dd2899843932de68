"""The false-positive breakdown on tiny SynthStreet data: trained probe/refit heads, real OoD split, CLI errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_common import PYTHON, REPO, child_env, ood_recipe_and_runs

from moose_ros.data import open_dataset
from moose_ros.eval import evaluate_ood
from moose_ros.eval.variants import parse_variants
from moose_ros.train.config import load_config
from moose_ros.train.fp_breakdown import border_mask, main
from moose_ros.train.ood_heads import TableScorer
from moose_ros.train.ood_table import train_seeds


def test_border_mask_marks_both_sides_of_a_class_edge() -> None:
    labels = np.zeros((4, 6), dtype=np.uint8)
    labels[:, 3:] = 7
    mask = border_mask(labels)
    assert mask[:, 2:4].all() and not mask[:, :2].any() and not mask[:, 4:].any()
    assert not border_mask(np.full((3, 3), 5, dtype=np.uint8)).any()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("fp")
    recipe, runs = ood_recipe_and_runs(tmp)
    train_seeds(load_config(recipe, []), runs, [0], progress=False)
    return recipe, runs


@pytest.mark.slow
def test_breakdown_matches_the_ood_table_fpr95_and_shares_add_up(trained: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, runs = trained
    out_json, out_md = tmp_path / "fp.json", tmp_path / "fp.md"
    assert main(["--config", str(recipe), "--runs", str(runs), "--seeds", "0", "--scores", "max_logit",
                 "entropy+bs", "--tpr", "0.5", "0.95", "--json", str(out_json), "--markdown", str(out_md)]) == 0
    result = json.loads(out_json.read_text())
    rows = {(r["key"], r["score"], r["tpr"]): r for r in result["rows"]}
    keys = ["Global", "Global-refit#0", "Best probe#0", "MOoSe#0"]
    assert set(rows) == {(k, s, t) for k in keys for s in ("max_logit", "entropy+bs") for t in (0.5, 0.95)}
    for (key, score, tpr), r in rows.items():
        assert sum(r["class_share"].values()) == pytest.approx(1.0) or r["false_positives"] == 0
        assert sum(r["band_share"].values()) == pytest.approx(1.0) or r["false_positives"] == 0
        assert 0.0 <= r["border_share"] <= 1.0 and 0.0 <= r["border_base"] <= 1.0
        if tpr == 0.5:  # a lower threshold can only add false positives
            assert rows[(key, score, 0.95)]["fpr"] >= r["fpr"]
            assert rows[(key, score, 0.95)]["threshold"] <= r["threshold"]
    # the FPR at TPR 0.95 is the whole-image FPR95 of the evaluation core (exact curves) for the same scores
    cfg = load_config(recipe, [])
    scorer = TableScorer(runs, [0], parse_variants(["max_logit", "entropy+bs"]))
    ood = open_dataset(cfg.data.ood_kind, cfg.data.ood_root, cfg.data.ood_split)
    ref = evaluate_ood(scorer, ood, protocols=("pooled",), regions=("image",), mode="exact", component_keys=(),
                       progress=False).views[("image", "pooled")]
    for key in keys:
        for score in ("max_logit", "entropy+bs"):
            assert rows[(key, score, 0.95)]["fpr"] == pytest.approx(ref[f"{key}/{score}"]["fpr95"], abs=1e-9)
    text = out_md.read_text()
    assert "| MOoSe | max_logit | 50 |" in text and "| Global-refit | entropy+bs | 95 |" in text


def test_cli_rejects_bad_input_with_one_line(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recipe, runs = trained
    base = ["--config", str(recipe), "--runs", str(runs)]
    for extra, needle in ((["--tpr", "1.5"], "--tpr"), (["--seeds", "4"], "seed4")):  # as a user runs it
        proc = subprocess.run([PYTHON, "-m", "moose_ros.train.fp_breakdown", *base, *extra], capture_output=True,
                              text=True, cwd=REPO, env=child_env(), timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("fp_breakdown: error:") and needle in lines[0], proc.stderr
    for extra, needle in ((["--scores", "sml"], "--scores"), (["--scores", "nonsense"], "nonsense")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0]
    assert not (runs / "fp_breakdown.json").exists()
