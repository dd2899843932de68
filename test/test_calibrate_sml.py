"""``moose calibrate``: per-class max-logit statistics, stored in the checkpoint and baked into an SML graph."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from test_export_fused import MEAN, STD, tiny_model

from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.calibrate import SmlAccumulator
from moose_ros.errors import ConfigError

pytestmark = pytest.mark.usefixtures("torch_threads")


def test_accumulator_matches_numpy_and_fills_unseen_classes() -> None:
    rng = np.random.default_rng(0)
    top, pred = rng.normal(3, 2, 500), rng.choice([0, 1, 3], 500)
    acc = SmlAccumulator(4)
    acc.update(top[:200], pred[:200])
    acc.update(top[200:], pred[200:])
    out = acc.compute()
    for c in (0, 1, 3):
        assert out["mean"][c] == pytest.approx(top[pred == c].mean())
        assert out["std"][c] == pytest.approx(top[pred == c].std())
        assert out["count"][c] == int((pred == c).sum())
    assert out["count"][2] == 0 and out["mean"][2] == pytest.approx(top.mean())
    assert out["std"][2] == pytest.approx(top.std())
    with pytest.raises(ConfigError, match="no pixels"):
        SmlAccumulator(2).compute()


def test_calibrate_cli_stores_statistics_that_the_sml_graph_uses(tmp_path, capsys) -> None:
    from moose_ros.data.synth import write_synthstreet
    from moose_ros.export import export_onnx, make_fused
    from moose_ros.model import CheckpointMeta, read_checkpoint, save_checkpoint
    from moose_ros.tools import calibrate as calibrate_tool

    model = tiny_model(seed=2, num_classes=19)
    meta = CheckpointMeta.for_model(
        model, classes=tuple(f"c{i}" for i in range(19)), colors=((0, 0, 0),) * 19, mean=MEAN, std=STD,
        input_size=(48, 96), calibration={"operating_points": {"max_logit": {"threshold": -1.0}}},
    )
    ckpt = save_checkpoint(tmp_path / "m.pt", model, meta)
    write_synthstreet(tmp_path / "data", split="train", count=2, height=48, width=96, seed=0)
    parser = argparse.ArgumentParser()
    calibrate_tool.add_arguments(parser)
    out = tmp_path / "calibrated.pt"
    assert calibrate_tool.run(parser.parse_args([str(ckpt), "--data", str(tmp_path / "data"), "-o", str(out)])) == 0
    assert "wrote calibration['sml'] (2 images)" in capsys.readouterr().out
    _, stored = read_checkpoint(out)
    sml = stored.calibration["sml"]
    assert stored.calibration["operating_points"]["max_logit"]["threshold"] == -1.0  # kept
    assert sml["images"] == 2 and sml["resolution"] == "feature"

    # The statistics are those of the mean logits at feature resolution (where the graph scores), per class.
    fused, _ = make_fused(out, scores=("sml",), input_size="checkpoint")
    from moose_ros.data import open_dataset

    tops, preds = [], []
    for sample in open_dataset("cityscapes", tmp_path / "data", "train"):
        with torch.no_grad():
            heads = fused.head_logits(fused.preprocess(torch.from_numpy(sample.image)[None]))
            z = sum(heads) / len(heads)
        tops.append(z.amax(1).numpy().ravel())
        preds.append(z.argmax(1).numpy().ravel())
    top, pred = np.concatenate(tops), np.concatenate(preds)
    assert sum(sml["moose"]["count"]) == top.size < 2 * 48 * 96  # every feature pixel, not the input's
    seen = np.unique(pred)
    np.testing.assert_allclose(np.asarray(sml["moose"]["mean"])[seen], [top[pred == c].mean() for c in seen], atol=1e-4)
    np.testing.assert_allclose(fused.sml.mean.numpy(), sml["moose"]["mean"], atol=1e-6)

    # Exported: ONNX Runtime's SML output equals the eager module's.
    path = tmp_path / "sml.onnx"
    export_onnx(out, path, scores=("sml", "max_logit"), input_size="checkpoint")
    image = sample.image[None]
    result = OnnxRuntimeBackend(path, threads=1).infer(image)
    with torch.no_grad():
        want = fused(torch.from_numpy(image))[1].numpy()
    np.testing.assert_allclose(result.anomaly, want, atol=1e-3 * float(np.ptp(want)) + 1e-5)
    with pytest.raises(ConfigError, match="moose calibrate"):
        make_fused(ckpt, scores=("sml",))
