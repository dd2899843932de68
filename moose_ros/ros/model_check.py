"""Check a fused-graph ONNX file against the node's contract before a backend loads it.

The contract (``moose_ros/backends/base.py``): input ``image`` uint8 [N, H, W, 3] RGB; outputs ``labels`` uint8
[N, H', W'] and ``anomaly`` float32 [N, H', W'] (plus float32 ``anomaly_<score>`` for every further score of the
metadata); ``ModelMeta`` JSON in the metadata with one RGB colour (three integers in 0..255) per class. A graph
that breaks it would otherwise load and then reject every frame, or half-work; here it stops start-up with one
line naming the file and what is wrong.

The file is read with a small protobuf wire-format reader (only the fields named below) instead of the ``onnx``
package, whose import alone takes seconds to minutes on a busy embedded CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moose_ros.errors import ConfigError

__all__ = ["check_model_file"]


#: TensorProto.DataType numbers -> names (onnx.proto).
_TYPES = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
          9: "bool", 10: "float16", 11: "double", 12: "uint32", 13: "uint64", 16: "bfloat16"}
_UINT8, _FLOAT = 2, 1


def _fields(buf: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one protobuf message: ints for varint/fixed fields, memoryview for bytes."""
    pos, end = 0, len(buf)

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            byte = buf[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    while pos < end:
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, buf[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            yield number, int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _sub(buf: memoryview, number: int) -> list[memoryview]:
    return [v for n, v in _fields(buf) if n == number and isinstance(v, memoryview)]


def _value_info(buf: memoryview) -> tuple[str, int, list[int | str]]:
    """ValueInfoProto -> (name, elem_type, dims); dims are ints or symbolic names ("?" when unknown)."""
    name = bytes(next(iter(_sub(buf, 1)), b"")).decode()
    elem, dims = 0, []
    for type_proto in _sub(buf, 2):
        for tensor in _sub(type_proto, 1):
            for number, value in _fields(tensor):
                if number == 1 and isinstance(value, int):
                    elem = value
                elif number == 2 and isinstance(value, memoryview):
                    for dim in _sub(value, 1):
                        parts = dict(_fields(dim))
                        size = parts.get(1)
                        symbol = parts.get(2)
                        dims.append(size if isinstance(size, int) else bytes(symbol).decode() if symbol else "?")
    return name, elem, dims


def _read(path: Path) -> tuple[dict[str, str], list[tuple[str, int, list[int | str]]], dict[str, int]]:
    """(metadata_props, graph inputs, {output name: elem_type}) of an ONNX ModelProto file."""
    buf = memoryview(path.read_bytes())
    props: dict[str, str] = {}
    for entry in _sub(buf, 14):  # ModelProto.metadata_props
        kv = {n: bytes(v).decode() for n, v in _fields(entry) if isinstance(v, memoryview)}
        props[kv.get(1, "")] = kv.get(2, "")
    graphs = _sub(buf, 7)  # ModelProto.graph
    if not graphs:
        raise ValueError("no graph")
    inputs = [_value_info(v) for v in _sub(graphs[0], 11)]
    outputs = {name: elem for name, elem, _ in (_value_info(v) for v in _sub(graphs[0], 12))}
    return props, inputs, outputs


def _type_name(elem: int) -> str:
    return _TYPES.get(elem, f"type {elem}")


def _check_io(inputs: list[tuple[str, int, list[int | str]]], outputs: dict[str, int],
              scores: tuple[str, ...]) -> list[str]:
    problems = []
    image = next((i for i in inputs if i[0] == "image"), None)
    if image is None:
        problems.append(f"no input 'image' (inputs: {[i[0] for i in inputs]})")
    else:
        _, elem, dims = image
        if elem != _UINT8 or len(dims) != 4 or dims[3] != 3:
            shown = "[" + ", ".join(str(d) for d in dims) + "]"
            problems.append(f"input 'image' is {_type_name(elem)} {shown}, expected uint8 [N, H, W, 3]")
    wanted = {"labels": _UINT8, "anomaly": _FLOAT}
    wanted.update({f"anomaly_{score}": _FLOAT for score in scores[1:]})
    for name, elem in wanted.items():
        if name not in outputs:
            problems.append(f"output '{name}' ({_type_name(elem)}) is missing; outputs are {sorted(outputs)}")
        elif outputs[name] != elem:
            problems.append(f"output '{name}' is {_type_name(outputs[name])}, expected {_type_name(elem)}")
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
    from moose_ros.contract import META_KEY, ModelMeta
    from moose_ros.errors import MooseError

    path = Path(path)
    if path.suffix.lower() != ".onnx" or not path.is_file():
        return
    try:
        props, inputs, outputs = _read(path)
    except (ValueError, IndexError, UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"model {path}: not a readable ONNX file ({err})") from err
    if META_KEY not in props:
        raise ConfigError(f"model {path}: no '{META_KEY}' metadata (export the graph with `moose export`)")
    try:
        meta = ModelMeta.from_json(props[META_KEY], source=str(path))
    except MooseError as err:
        raise ConfigError(f"model {path}: {err}") from err
    problems = _check_meta(meta) + _check_io(inputs, outputs, meta.scores)
    if problems:
        raise ConfigError(f"model {path} does not fit moose_node: " + "; ".join(problems))
