"""Static TensorRT-compatibility check of an ONNX graph (runs without TensorRT).

The whitelist below is the set of ONNX operators (default domain) that the TensorRT 10 ONNX parser
(onnx-tensorrt) converts for opset <= 17, written from its operator support matrix. Beyond the op names the
check enforces what TensorRT requires of network I/O and of 8-bit tensors:

- graph inputs/outputs must not be int64/float64/strings (no int64 outputs: the labels are uint8);
- a uint8 tensor may only be produced or consumed by ``Cast``, and only from/to float32 or float16 (TensorRT
  converts uint8 only to and from those types);
- every node must be in the default ONNX domain (no custom ops) and in the whitelist, subgraphs included.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from moose_ros.errors import ExportError

__all__ = ["TENSORRT_OPS", "check_tensorrt_compatible", "iter_nodes", "tensorrt_problems"]

#: ONNX ops (default domain, opset <= 17) the TensorRT 10 ONNX parser supports.
_OPS_TEXT = """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
    Clip Compress Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements
    GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization HardSigmoid HardSwish Hardmax Identity If InstanceNormalization IsInf IsNaN LRN LSTM
    LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max MaxPool
    Mean Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad Pow QuantizeLinear RNN
    RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
    Reshape Resize ReverseSequence RoiAlign Round Scan Scatter ScatterElements ScatterND Selu Shape Shrink
    Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
    ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
TENSORRT_OPS: frozenset[str] = frozenset(_OPS_TEXT.split())

_DEFAULT_DOMAINS = ("", "ai.onnx")
#: TensorProto element types TensorRT cannot take as network inputs/outputs.
_BAD_IO_TYPES = {
    "INT64": "int64",
    "DOUBLE": "float64",
    "STRING": "string",
    "UINT16": "uint16",
    "UINT32": "uint32",
    "UINT64": "uint64",
    "COMPLEX64": "complex64",
    "COMPLEX128": "complex128",
}


def iter_nodes(graph: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, node)`` for every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies)."""
    for index, node in enumerate(graph.node):
        name = node.name or f"<unnamed #{index}>"
        yield prefix + name, node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from iter_nodes(attr.g, f"{prefix}{name}/{attr.name}/")
            for sub in attr.graphs:
                yield from iter_nodes(sub, f"{prefix}{name}/{attr.name}/")


def _elem_type_name(value_info: Any) -> str:
    import onnx

    return onnx.TensorProto.DataType.Name(value_info.type.tensor_type.elem_type)


def tensorrt_problems(model: Any) -> list[str]:
    """Every reason TensorRT would reject ``model`` (an ``onnx.ModelProto``), each naming the node or tensor."""
    import onnx

    problems: list[str] = []
    opsets = {entry.domain: entry.version for entry in model.opset_import}
    version = opsets.get("", opsets.get("ai.onnx"))
    if version is None or version > 17:
        problems.append(f"model imports opset {version} of the default domain; this check covers opset <= 17")
    graph = model.graph
    for kind, values in (("input", graph.input), ("output", graph.output)):
        initializers = {t.name for t in graph.initializer}
        for value in values:
            if value.name in initializers:
                continue
            type_name = _elem_type_name(value)
            if type_name in _BAD_IO_TYPES:
                problems.append(
                    f"graph {kind} '{value.name}' is {_BAD_IO_TYPES[type_name]}; TensorRT I/O must be float32, "
                    "float16, int32, int8, uint8 or bool"
                )
    for path, node in iter_nodes(graph):
        if node.domain not in _DEFAULT_DOMAINS:
            problems.append(f"node '{path}' (op {node.domain}::{node.op_type}) is a custom-domain op TensorRT lacks")
        elif node.op_type not in TENSORRT_OPS:
            problems.append(f"node '{path}' (op {node.op_type}) is not supported by the TensorRT ONNX parser")
    problems.extend(_uint8_problems(model, onnx))
    return problems


def _uint8_problems(model: Any, onnx: Any) -> Iterable[str]:
    """uint8 tensors that are touched by anything but Cast (needs shape/type inference)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is best effort; a model it cannot handle is judged on names alone
        inferred = model
    graph = inferred.graph
    uint8 = onnx.TensorProto.UINT8
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    for t in graph.initializer:
        types[t.name] = t.data_type
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    for index, node in enumerate(graph.node):
        name = node.name or f"<unnamed #{index}>"
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            source = types.get(node.input[0])
            if (to == uint8 and source not in floats and source is not None) or (source == uint8 and to not in floats):
                yield (
                    f"node '{name}' (op Cast) converts {_type_name(onnx, source)} to {_type_name(onnx, to)}; "
                    "TensorRT casts uint8 only from/to float32 or float16"
                )
            continue
        touched = [t for t in [*node.input, *node.output] if t and types.get(t) == uint8]
        if touched:
            yield (
                f"node '{name}' (op {node.op_type}) reads or writes uint8 tensor(s) {touched}; TensorRT accepts "
                "uint8 only through Cast at the network's inputs/outputs"
            )


def _type_name(onnx: Any, elem: int | None) -> str:
    if not elem:
        return "an unknown type"
    return onnx.TensorProto.DataType.Name(elem).lower()


def check_tensorrt_compatible(model: Any, *, source: str = "<model>") -> None:
    """Raise :class:`ExportError` listing every TensorRT incompatibility of ``model`` (``onnx.ModelProto``)."""
    problems = tensorrt_problems(model)
    if problems:
        listing = "\n  - ".join(problems)
        raise ExportError(f"{source}: the graph is not TensorRT-compatible:\n  - {listing}")
