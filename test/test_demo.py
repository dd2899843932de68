"""``moose demo`` at toy size: SynthStreet drive -> bag -> node over loopback DDS, Global and MOoSe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module")
def checkpoint_and_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny MOoSe checkpoint (random weights, K=3 probes) and its fused MOoSe ONNX, side by side."""
    torch = pytest.importorskip("torch")
    from moose_ros.data import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
    from moose_ros.export import export_onnx
    from moose_ros.model import CheckpointMeta, moose_deeplabv3_mobilenet_v3_large, save_checkpoint

    torch.manual_seed(3)
    torch.set_num_threads(1)
    model = moose_deeplabv3_mobilenet_v3_large(
        num_classes=19, aspp_channels=16, probe_width=16, atrous_rates=(2, 4), reduced_tail=True
    ).eval()
    folder = tmp_path_factory.mktemp("models")
    ckpt = folder / "toy.pt"
    save_checkpoint(ckpt, model, CheckpointMeta.for_model(model, classes=CITYSCAPES_CLASSES, colors=CITYSCAPES_COLORS))
    onnx_path = folder / "toy.onnx"
    export_onnx(ckpt, onnx_path, scores=("max_logit", "entropy"), check_tensorrt=False)
    return ckpt, onnx_path


def test_demo_global_vs_moose(checkpoint_and_onnx, tmp_path: Path, ros_domain: int, capsys) -> None:
    from moose_ros.backends.onnx_meta import read_meta
    from moose_ros.bag import inspect_bag
    from moose_ros.tools import demo

    ckpt, onnx_path = checkpoint_and_onnx
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    out = tmp_path / "demo"
    args = parser.parse_args(["--out", str(out), "--frames", "3", "--size", "64x128",
                              "--model", str(onnx_path), "--checkpoint", str(ckpt), "--scores", "max_logit",
                              "--threads", "1", "--domain-id", str(ros_domain), "--no-progress"])
    assert demo.run(args) == 0
    printed = capsys.readouterr().out

    assert inspect_bag(out / "demo.bag").frames == 3
    exported = list((out / "models").glob("toy_global_*.onnx"))
    assert len(exported) == 1 and read_meta(exported[0]).num_probes == 0  # Global = global head alone
    report = json.loads((out / "report" / "report.json").read_text())
    runs = {r["method"]: r for r in report["runs"]}
    assert set(runs) == {"Global", "MOoSe"}
    for run in runs.values():
        assert (run["frames_sent"], run["frames_answered"], run["frames_dropped"]) == (3, 3, 0)
        assert run["score"] == "max_logit" and run["pooled"]["num_anomaly_pixels"] > 0
    # two different graphs ran: the probes change the scores
    assert runs["Global"]["pooled"]["auroc"] != runs["MOoSe"]["pooled"]["auroc"]
    assert "| Global | max_logit |" in printed and "| MOoSe | max_logit |" in printed
    assert f"report: {out / 'report' / 'report.md'}" in printed
