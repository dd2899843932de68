"""``moose eval`` end to end: SynthStreet files in real dataset layouts, a saved checkpoint, exported ONNX graphs."""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import torch
from torch import nn

from moose_ros.data import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
from moose_ros.data.synth import write_synthstreet
from moose_ros.errors import MooseError
from moose_ros.export import export_onnx
from moose_ros.model import CheckpointMeta, build_model, save_checkpoint
from moose_ros.tools import evaluate


def main(argv: list[str]) -> int:
    """``moose eval ARGS`` as ``moose_ros.cli.main`` runs it (exit 2 and the message on stderr for MooseError);
    the tool's own parser, so the test does not depend on the other tools being importable."""
    assert argv[0] == "eval"
    parser = argparse.ArgumentParser(prog="moose eval")
    evaluate.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return evaluate.run(args)
    except MooseError as err:
        print(f"moose eval: error: {err}", file=sys.stderr)
        return 2


pytestmark = pytest.mark.usefixtures("torch_threads")
TORCH_THREADS = 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple:
    torch.manual_seed(0)
    net = build_model(
        "deeplabv3_mobilenet_v3_large", num_classes=19, aspp_channels=16, probe_width=8, reduced_tail=True
    )
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
            elif isinstance(module, nn.Conv2d) and module.out_channels == 19:
                # sharper class scores than random init gives: near-uniform softmaxes make entropy ranks ties
                # that float rounding (ORT vs torch) reorders
                module.weight.mul_(30.0)
    net.eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    meta = CheckpointMeta.for_model(net, classes=CITYSCAPES_CLASSES, colors=CITYSCAPES_COLORS)
    save_checkpoint(path, net, meta)
    return path, net


@pytest.fixture(scope="module")
def graphs(checkpoint, tmp_path_factory) -> tuple:
    """The checkpoint exported twice: a global-only graph and the MOoSe graph (max_logit, entropy)."""
    d = tmp_path_factory.mktemp("onnx")
    export_onnx(checkpoint[0], d / "g.onnx", scores=("max_logit", "entropy"), heads="global")
    export_onnx(checkpoint[0], d / "m.onnx", scores=("max_logit", "entropy"))
    return d / "g.onnx", d / "m.onnx"


@pytest.fixture(scope="module")
def laf_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("laf")
    write_synthstreet(root, split="test", count=3, layout="lostandfound", seed=3, height=64, width=128, ood=True)
    return root


def test_eval_checkpoint_lostandfound(checkpoint, graphs, laf_root, tmp_path, capsys) -> None:
    out = tmp_path / "report"
    rc = main(
        ["eval", "--model", str(checkpoint[0]), "--dataset", "lostandfound", "--root", str(laf_root),
         "--split", "test", "--out", str(out), "--gallery", "2", "--mode", "exact", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| Global |" in printed and "| MOoSe |" in printed
    data = json.loads((out / "report.json").read_text())
    assert list(data["ood"]) == ["Global", "MOoSe"]
    assert list(data["ood"]["MOoSe"]) == ["max_logit", "entropy", "msp"]
    r = data["ood"]["MOoSe"]["entropy"]
    assert r["protocol"] == "pooled" and r["mode"] == "exact" and r["num_images"] == 3 and 0 < r["aupr"] <= 1
    assert data["ood"]["Global"]["entropy"]["aupr"] != data["ood"]["MOoSe"]["entropy"]["aupr"]
    assert set(data["components"]["MOoSe"]) == {"max_logit"}
    assert (out / "pr_curves.png").is_file() and (out / "report.md").is_file()
    assert sorted(p.name for p in (out / "gallery").iterdir()) == ["000.png", "001.png"]

    # the same model exported twice (global-only and MOoSe graphs) and run through ONNX Runtime
    g_path, m_path = graphs
    out2 = tmp_path / "report_onnx"
    rc = main(
        ["eval", "--model", str(m_path), "--global-model", str(g_path), "--dataset", "lostandfound",
         "--root", str(laf_root), "--out", str(out2), "--gallery", "0", "--mode", "exact", "--no-progress",
         "--protocol", "per-image", "--limit", "2"]
    )  # fmt: skip
    assert rc == 0
    onnx_data = json.loads((out2 / "report.json").read_text())
    assert onnx_data["ood"]["MOoSe"]["max_logit"]["protocol"] == "per_image"
    assert onnx_data["ood"]["MOoSe"]["max_logit"]["num_images"] == 2
    assert not (out2 / "gallery").exists()
    capsys.readouterr()


def test_eval_onnx_matches_checkpoint(checkpoint, graphs, laf_root, tmp_path) -> None:
    # ONNX Runtime and torch agree on the scores to ~1e-4, so the metrics agree closely (FPR95 looser: with
    # ~30 anomaly pixels one pixel changing rank at the 95 % TPR threshold moves it by ~0.006)
    m_path = graphs[1]
    common = ["--dataset", "lostandfound", "--root", str(laf_root), "--gallery", "0", "--no-progress",
              "--no-components", "--mode", "exact"]  # fmt: skip
    assert main(["eval", "--model", str(m_path), "--out", str(tmp_path / "a"), *common]) == 0
    pt_args = ["--score", "max_logit", "--score", "entropy"]
    assert main(["eval", "--model", str(checkpoint[0]), "--out", str(tmp_path / "b"), *pt_args, *common]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())["ood"]["MOoSe"]
    b = json.loads((tmp_path / "b" / "report.json").read_text())["ood"]["MOoSe"]
    for score in ("max_logit", "entropy"):
        for k in ("aupr", "fpr95", "auroc"):
            assert a[score][k] == pytest.approx(b[score][k], abs=2e-2 if k == "fpr95" else 5e-3), (score, k)


def test_eval_segmentation_dataset(checkpoint, tmp_path, capsys) -> None:
    root = tmp_path / "cs"
    write_synthstreet(root, split="val", count=2, layout="cityscapes", seed=4, height=64, width=128)
    out = tmp_path / "seg_report"
    rc = main(
        ["eval", "--model", str(checkpoint[0]), "--dataset", "cityscapes", "--root", str(root), "--split", "val",
         "--out", str(out), "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    data = json.loads((out / "report.json").read_text())
    assert set(data["segmentation"]) == {"Global", "probe 1", "probe 2", "probe 3", "probe 4"}
    assert 0 <= data["segmentation"]["Global"]["miou"] <= 1
    assert data["calibration"]["MOoSe"]["mutual_information"] > 0 and 0 <= data["calibration"]["Global"]["ece"] <= 1
    md = (out / "report.md").read_text()
    assert "## Segmentation" in md and "## Calibration and head diversity" in md
    capsys.readouterr()


def test_eval_errors(checkpoint, laf_root, tmp_path, capsys) -> None:
    args = ["eval", "--dataset", "lostandfound", "--root", str(laf_root), "--out", str(tmp_path / "x")]
    assert main([*args, "--model", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*args, "--model", str(checkpoint[0]), "--global-model", str(checkpoint[0])]) == 2
    assert "--global-model" in capsys.readouterr().err
    bad_root = ["eval", "--dataset", "lostandfound", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path)]
    assert main([*bad_root, "--model", str(checkpoint[0])]) == 2
    assert "nowhere" in capsys.readouterr().err
