"""Check a fused-graph ONNX file against the node's contract before a backend loads it.

The contract (``moose_ros/backends/base.py``): input ``image`` uint8 [N, H, W, 3] RGB; outputs ``labels`` uint8
[N, H', W'] and ``anomaly`` float32 [N, H', W'] (plus float32 ``anomaly_<score>`` for every further score of the
metadata); ``ModelMeta`` JSON in the metadata with one RGB colour (three integers in 0..255) per class. A graph
that breaks it would otherwise load and then reject every frame, or half-work; here it stops start-up with one
line naming the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moose_ros.errors import ConfigError

__all__ = ["check_model_file"]


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type).lower()


def _dims(value_info: Any) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _check_io(graph: Any, scores: tuple[str, ...]) -> list[str]:
    from onnx import TensorProto

    problems = []
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        problems.append(f"expected one input 'image', found {[i.name for i in inputs]}")
    else:
        image = inputs[0]
        elem, dims = image.type.tensor_type.elem_type, _dims(image)
        if elem != TensorProto.UINT8 or len(dims) != 4 or dims[3] != 3:
            shown = "[" + ", ".join(str(d) for d in dims) + "]"
            problems.append(f"input '{image.name}' is {_type_name(elem)} {shown}, expected uint8 [N, H, W, 3]")
    outputs = {o.name: o for o in graph.output}
    wanted = {"labels": TensorProto.UINT8, "anomaly": TensorProto.FLOAT}
    wanted.update({f"anomaly_{score}": TensorProto.FLOAT for score in scores[1:]})
    for name, elem in wanted.items():
        if name not in outputs:
            problems.append(f"output '{name}' ({_type_name(elem)}) is missing; outputs are {sorted(outputs)}")
        elif outputs[name].type.tensor_type.elem_type != elem:
            got = _type_name(outputs[name].type.tensor_type.elem_type)
            problems.append(f"output '{name}' is {got}, expected {_type_name(elem)}")
    return problems


def _check_meta(meta: Any) -> list[str]:
    problems = []
    if len(meta.colors) != len(meta.classes):
        problems.append(f"metadata has {len(meta.colors)} colours for {len(meta.classes)} classes")
    bad = [c for c in meta.colors if len(c) != 3 or any(not 0 <= int(v) <= 255 for v in c)]
    if bad:
        problems.append(f"metadata colours must be [r, g, b] in 0..255, got {bad[0]}")
    if not meta.scores:
        problems.append("metadata lists no anomaly score")
    return problems


def check_model_file(path: str | Path) -> None:
    """Raise :class:`ConfigError` (one line: file and every problem) unless ``path`` honours the contract.

    Files that do not end in ``.onnx`` (e.g. torch checkpoints) and missing files are left to the backend, which
    reports them itself.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return
    import onnx

    from moose_ros.backends.base import META_KEY, ModelMeta
    from moose_ros.errors import MooseError

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError and others: any failure means "not a readable ONNX file"
        raise ConfigError(f"model {path}: not a readable ONNX file ({type(err).__name__}: {err})") from err
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise ConfigError(f"model {path}: no '{META_KEY}' metadata (export the graph with `moose export`)")
    try:
        meta = ModelMeta.from_json(props[META_KEY], source=str(path))
    except MooseError as err:
        raise ConfigError(f"model {path}: {err}") from err
    problems = _check_meta(meta) + _check_io(model.graph, meta.scores)
    if problems:
        raise ConfigError(f"model {path} does not fit moose_node: " + "; ".join(problems))
