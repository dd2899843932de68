"""Read the :class:`~moose_ros.contract.ModelMeta` stored in a fused ONNX graph (no torch, no runtime)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from moose_ros.contract import ModelMeta, meta_from_props
from moose_ros.errors import BackendError

__all__ = ["file_sha256", "meta_from_props", "read_meta"]


def read_meta(path: str | Path) -> ModelMeta:
    """The model description of the fused graph at ``path`` (reads the ONNX protobuf with the ``onnx`` package)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise BackendError(f"model file '{path}' does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises DecodeError, OSError, ... depending on the damage
        raise BackendError(f"{path}: not a readable ONNX file: {err}") from err
    return meta_from_props({p.key: p.value for p in model.metadata_props}, source=str(path))


def file_sha256(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of the file at ``path`` (read in ``chunk_bytes`` chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
