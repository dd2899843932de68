"""The static TensorRT-compatibility check: rejects unsupported ops, int64 outputs and uint8 misuse, by node name."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from moose_ros.errors import ExportError
from moose_ros.export import check_tensorrt_compatible, tensorrt_problems


def _model(nodes, inputs, outputs, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _vi(name: str, elem: int, shape=(1, 4)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def test_supported_graph_passes():
    model = _model(
        [
            helper.make_node("Cast", ["image"], ["x"], name="to_float", to=TensorProto.FLOAT),
            helper.make_node("Relu", ["x"], ["y"], name="relu"),
            helper.make_node("ArgMax", ["y"], ["idx"], name="argmax", axis=1, keepdims=0),
            helper.make_node("Cast", ["idx"], ["idx_f"], name="to_float_again", to=TensorProto.FLOAT),
            helper.make_node("Cast", ["idx_f"], ["labels"], name="to_uint8", to=TensorProto.UINT8),
        ],
        [_vi("image", TensorProto.UINT8)],
        [_vi("labels", TensorProto.UINT8, (1,)), _vi("y", TensorProto.FLOAT)],
    )
    assert tensorrt_problems(model) == []
    check_tensorrt_compatible(model)


def test_unsupported_op_is_named():
    model = _model(
        [
            helper.make_node("Relu", ["x"], ["y"], name="fine_relu"),
            helper.make_node("Reshape", ["y", "shape"], ["y4"], name="reshape"),
            helper.make_node("Det", ["y4"], ["d"], name="my_determinant"),
        ],
        [_vi("x", TensorProto.FLOAT, (2, 2)), _vi("shape", TensorProto.INT64, (2,))],
        [_vi("d", TensorProto.FLOAT, ())],
    )
    with pytest.raises(ExportError, match=r"node 'my_determinant' \(op Det\)"):
        check_tensorrt_compatible(model, source="det.onnx")
    assert not any("fine_relu" in p for p in tensorrt_problems(model))


def test_int64_output_is_named():
    model = _model(
        [helper.make_node("ArgMax", ["x"], ["labels"], name="argmax", axis=1, keepdims=0)],
        [_vi("x", TensorProto.FLOAT)],
        [_vi("labels", TensorProto.INT64, (1,))],
    )
    with pytest.raises(ExportError, match=r"graph output 'labels' is int64"):
        check_tensorrt_compatible(model)


def test_custom_domain_and_uint8_misuse_and_opset():
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    graph = helper.make_graph([node], "g", [_vi("x", TensorProto.FLOAT)], [_vi("y", TensorProto.FLOAT)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    assert any("node 'fancy' (op com.example::FancyOp)" in p for p in tensorrt_problems(model))

    model = _model(
        [helper.make_node("Transpose", ["image"], ["t"], name="uint8_transpose", perm=[1, 0])],
        [_vi("image", TensorProto.UINT8)],
        [_vi("t", TensorProto.UINT8, (4, 1))],
    )
    assert any("uint8_transpose" in p and "uint8" in p for p in tensorrt_problems(model))

    model = _model(
        [
            helper.make_node("ArgMax", ["x"], ["idx"], name="argmax", axis=1, keepdims=0),
            helper.make_node("Cast", ["idx"], ["labels"], name="int_to_uint8", to=TensorProto.UINT8),
        ],
        [_vi("x", TensorProto.FLOAT)],
        [_vi("labels", TensorProto.UINT8, (1,))],
    )
    assert any("node 'int_to_uint8' (op Cast) converts int64 to uint8" in p for p in tensorrt_problems(model))

    model = _model(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        [_vi("x", TensorProto.FLOAT)],
        [_vi("y", TensorProto.FLOAT)],
        opset=18,
    )
    assert any("opset 18" in p for p in tensorrt_problems(model))


def test_subgraph_nodes_are_checked():
    then_graph = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["u"], name="inner_unique")], "then", [], [_vi("u", TensorProto.FLOAT, (4,))]
    )
    else_graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["v"], name="inner_identity")], "else", [], [_vi("v", TensorProto.FLOAT)]
    )
    node = helper.make_node("If", ["cond"], ["out"], name="branch", then_branch=then_graph, else_branch=else_graph)
    graph = helper.make_graph(
        [node], "g", [_vi("cond", TensorProto.BOOL, ()), _vi("x", TensorProto.FLOAT)], [_vi("out", TensorProto.FLOAT)]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    problems = tensorrt_problems(model)
    assert any("branch/then_branch/inner_unique" in p and "Unique" in p for p in problems)
    assert not any("inner_identity" in p for p in problems)
