"""``moose export --int8``: ONNX Runtime static QDQ quantisation of the network's convolutions only, calibrated on
real SynthStreet images; the graph keeps its contract and meta, and ``moose bench int8`` compares it to fp32."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import pytest
from test_export_fused import MEAN, STD, tiny_model

from moose_ros.backends.base import META_KEY, ModelMeta
from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.errors import ConfigError, MooseError

pytestmark = pytest.mark.usefixtures("torch_threads")


def _cli(module: object, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return module.run(parser.parse_args(argv))  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from moose_ros.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
    from moose_ros.data.synth import write_synthstreet
    from moose_ros.model import CheckpointMeta, save_checkpoint

    tmp = tmp_path_factory.mktemp("int8")
    model = tiny_model(seed=3, num_classes=19)
    meta = CheckpointMeta.for_model(model, classes=CITYSCAPES_CLASSES, colors=CITYSCAPES_COLORS, mean=MEAN,
                                    std=STD, input_size=(48, 96))
    write_synthstreet(tmp / "data", split="train", count=6, height=48, width=96, seed=0)
    write_synthstreet(tmp / "data", split="val", count=3, height=48, width=96, seed=1)
    write_synthstreet(tmp / "ood", split="test", count=3, height=48, width=96, seed=2, ood=True, layout="fishyscapes")
    return {"tmp": tmp, "ckpt": save_checkpoint(tmp / "m.pt", model, meta), "data": tmp / "data", "ood": tmp / "ood"}


def test_int8_export_quantises_only_the_network_and_keeps_the_contract(world: dict[str, Path], capsys) -> None:
    from moose_ros.tools import export as export_tool

    fp32, int8 = world["tmp"] / "fp32.onnx", world["tmp"] / "int8.onnx"
    common = ["--score", "max_logit", "--score", "entropy", "--boundary-suppression", "--input-size", "checkpoint"]
    assert _cli(export_tool, [str(world["ckpt"]), "-o", str(fp32), *common]) == 0
    argv = [str(world["ckpt"]), "-o", str(int8), *common, "--int8", "--calib", str(world["data"]), "--calib-count", "4"]
    assert _cli(export_tool, argv) == 0
    assert "int8 network" in capsys.readouterr().out
    assert sorted(p.name for p in world["tmp"].iterdir() if p.name.startswith(".")) == []  # no staged file left

    graph = onnx.load(str(int8))
    meta = ModelMeta.from_json({p.key: p.value for p in graph.metadata_props}[META_KEY])
    assert meta.scores == ("max_logit", "entropy") and meta.extra["int8"]["calib_images"] == 4
    # every network conv except the C-channel logit layers reads a dequantised input; post-processing convs don't
    produced = {out: node for node in graph.graph.node for out in node.output}
    convs = [n for n in graph.graph.node if n.op_type == "Conv"]
    network = [n for n in convs if n.name.startswith("/model/")]
    weights = {t.name: tuple(t.dims) for t in graph.graph.initializer}

    def dequantised(node: onnx.NodeProto) -> bool:
        source = produced.get(node.input[0])
        return source is not None and source.op_type == "DequantizeLinear"

    logit_layers = [n for n in network if weights.get(n.input[1], (0,))[0] == 19]  # fp32 weights, 19 outputs
    assert len(logit_layers) == 1 + meta.num_probes and not any(dequantised(n) for n in logit_layers)
    assert sum(dequantised(n) for n in network) == len(network) - len(logit_layers)
    assert not any(dequantised(n) for n in convs if not n.name.startswith("/model/"))

    # same contract, outputs close to fp32 on a real scene
    from moose_ros.data import open_dataset

    image = np.asarray(open_dataset("cityscapes", world["data"], "val")[0].image)[None]
    a, b = OnnxRuntimeBackend(fp32, threads=1).infer(image), OnnxRuntimeBackend(int8, threads=1).infer(image)
    assert b.labels.shape == a.labels.shape and b.labels.dtype == np.uint8 and b.anomaly.dtype == np.float32
    assert np.mean(a.labels == b.labels) > 0.8
    assert np.corrcoef(a.anomaly.ravel(), b.anomaly.ravel())[0, 1] > 0.9
    assert not np.array_equal(a.anomaly, b.anomaly)  # the network's numbers did move


def test_bench_int8_reports_speed_miou_and_aupr(world: dict[str, Path], capsys) -> None:
    from moose_ros.tools import bench as bench_tool

    fp32, int8 = world["tmp"] / "fp32.onnx", world["tmp"] / "int8.onnx"
    if not int8.is_file():
        pytest.skip("needs the int8 export of the test above")
    argv = ["int8", str(fp32), str(int8), "--val", str(world["data"]), "--ood", str(world["ood"]),
            "--sizes", "48x96", "--repeats", "1"]
    assert _cli(bench_tool, argv) == 0
    out = capsys.readouterr().out
    assert "| 48x96 |" in out and "val mIoU (3 images)" in out and "| entropy |" in out and "| max_logit |" in out


def test_int8_without_calibration_images_is_refused_before_export(world: dict[str, Path]) -> None:
    from moose_ros.tools import export as export_tool

    out = world["tmp"] / "never.onnx"
    with pytest.raises(ConfigError, match="--int8 needs --calib"):
        _cli(export_tool, [str(world["ckpt"]), "-o", str(out), "--int8"])
    (world["tmp"] / "empty").mkdir(exist_ok=True)
    with pytest.raises(MooseError, match="empty"):
        _cli(export_tool, [str(world["ckpt"]), "-o", str(out), "--int8", "--calib", str(world["tmp"] / "empty")])
    assert not out.exists()


def test_bench_int8_refuses_graphs_given_the_wrong_way_round(world: dict[str, Path]) -> None:
    """An fp32 graph given as INT8 (or an int8 one as FP32) is named, not benchmarked under the wrong label."""
    from test_bad_input_common import assert_refused, moose

    fp32, int8 = world["tmp"] / "fp32.onnx", world["tmp"] / "int8.onnx"
    if not int8.is_file():
        pytest.skip("needs the int8 export of the test above")
    common = ["--val", str(world["data"]), "--ood", str(world["ood"]), "--sizes", "48x96", "--repeats", "1"]
    assert_refused(moose(["bench", "int8", str(fp32), str(fp32), *common], world["tmp"]),
                   f"INT8 {fp32} is an fp32 graph", "no 'int8' quantisation")
    assert_refused(moose(["bench", "int8", str(int8), str(int8), *common], world["tmp"]),
                   f"FP32 {int8} is an int8 graph")
