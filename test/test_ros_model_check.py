"""Start-up model check: a graph that breaks the node's contract stops moose_node with one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_ros_support import tiny_fused_onnx

from moose_ros.backends.base import META_KEY
from moose_ros.errors import ConfigError
from moose_ros.ros import launcher
from moose_ros.ros.model_check import check_model_file


def _variant(tmp_path: Path, name: str, mutate: Callable[[Any], None]) -> Path:
    import onnx

    model = onnx.load(str(tiny_fused_onnx(tmp_path / "tiny.onnx")))
    mutate(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _float_input(model: Any) -> None:
    from onnx import TensorProto, helper

    model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    cast = next(n for n in model.graph.node if n.op_type == "Cast" and n.input[0] == "image")
    cast.CopyFrom(helper.make_node("Identity", ["image"], list(cast.output)))


def _int64_labels(model: Any) -> None:
    from onnx import TensorProto

    next(o for o in model.graph.output if o.name == "labels").type.tensor_type.elem_type = TensorProto.INT64
    next(n for n in model.graph.node if n.output[0] == "labels").attribute[0].i = TensorProto.INT64


def _short_colours(model: Any) -> None:
    prop = next(p for p in model.metadata_props if p.key == META_KEY)
    meta = json.loads(prop.value)
    meta["colors"] = meta["colors"][:2]
    prop.value = json.dumps(meta)


def _no_anomaly(model: Any) -> None:
    keep = [o for o in model.graph.output if o.name != "anomaly"]
    del model.graph.output[:]
    model.graph.output.extend(keep)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (_float_input, "input 'image' is float [N, H, W, 3], expected uint8 [N, H, W, 3]"),
        (_int64_labels, "output 'labels' is int64, expected uint8"),
        (_short_colours, "metadata has 2 colours for 6 classes"),
        (_no_anomaly, "output 'anomaly' (float) is missing"),
    ],
)
def test_contract_violations_are_named(tmp_path: Path, mutate: Callable[[Any], None], needle: str) -> None:
    path = _variant(tmp_path, mutate.__name__, mutate)
    with pytest.raises(ConfigError) as info:
        check_model_file(path)
    assert str(path) in str(info.value) and needle in str(info.value)
    assert "\n" not in str(info.value)


def test_good_graph_and_non_onnx_pass(tmp_path: Path) -> None:
    check_model_file(tiny_fused_onnx(tmp_path / "tiny.onnx"))
    check_model_file(tmp_path / "checkpoint.pt")  # not ONNX: left to the backend


@pytest.mark.ros
def test_node_refuses_float_input_graph(tmp_path: Path, ros_env: dict[str, str]) -> None:
    path = _variant(tmp_path, "float_input", _float_input)
    log_path = tmp_path / "node.log"
    proc = launcher.start_node({"model": str(path)}, env=ros_env, log_path=log_path)
    try:
        code = proc.wait(timeout=60)
    finally:
        launcher.stop(proc)
    errors = [line for line in log_path.read_text().splitlines() if "error" in line.lower()]
    assert code == 2, log_path.read_text()
    assert errors[-1].startswith(f"moose_node: error: model {path} does not fit moose_node: input 'image' is float")
    assert "Traceback" not in log_path.read_text() and "ready" not in log_path.read_text()
