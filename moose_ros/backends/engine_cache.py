"""The TensorRT-independent half of the TensorRT backend: engine cache, keys, atomic writes, binding shapes.

An engine is only valid for the exact ONNX graph, TensorRT version, GPU model, precision and input shape profile
it was built for, so each cached engine carries its :class:`EngineKey`. A cache file is::

    MAGIC (8 bytes) | header length (uint32 LE) | header JSON (key, payload size, payload sha256)
    | payload (the serialised engine) | END_MAGIC (8 bytes) | sha256(header JSON + payload) (32 bytes)

It is written to a temporary file in the same folder, fsync'ed and then ``os.replace``'d over the old one, so a
reader sees either the old complete file or the new complete file. A torn, truncated or foreign file fails the
magic/length/checksum checks and is rebuilt, never loaded. Nothing here imports TensorRT, CUDA or torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moose_ros.backends.base import ModelMeta
from moose_ros.errors import BackendError

__all__ = [
    "BufferSet",
    "CacheFileError",
    "EngineCache",
    "EngineKey",
    "ShapeProfile",
    "atomic_write_bytes",
    "output_shapes",
    "pack_cache_file",
    "unpack_cache_file",
]

LOG = logging.getLogger(__name__)

MAGIC = b"MOOSETRT"
END_MAGIC = b"MOOSEEND"
_FORMAT_VERSION = 1
_LEN = struct.Struct("<I")


class CacheFileError(BackendError):
    """A cache file is torn, truncated, foreign or fails its checksum (the reason is in the message)."""


@dataclass(frozen=True)
class ShapeProfile:
    """TensorRT optimisation profile of the ``image`` input, each entry (N, H, W) in images and pixels."""

    min: tuple[int, int, int] = (1, 32, 32)
    opt: tuple[int, int, int] = (1, 720, 1280)
    max: tuple[int, int, int] = (2, 2048, 2048)

    def __post_init__(self) -> None:
        for lo, mid, hi, axis in zip(self.min, self.opt, self.max, "NHW", strict=True):
            if not 1 <= lo <= mid <= hi:
                raise BackendError(f"shape profile: need 1 <= min <= opt <= max on axis {axis}, got {lo}, {mid}, {hi}")

    def contains(self, n: int, h: int, w: int) -> bool:
        """True when an [n, h, w, 3] input lies inside the profile."""
        return all(lo <= v <= hi for lo, v, hi in zip(self.min, (n, h, w), self.max, strict=True))

    def describe(self) -> str:
        """Stable text form used in the cache key, e.g. ``"1x32x32x3:1x720x1280x3:2x2048x2048x3"``."""
        return ":".join("x".join(str(v) for v in (*shape, 3)) for shape in (self.min, self.opt, self.max))


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on. Any field that differs forces a rebuild."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    profile: str

    def to_dict(self) -> dict[str, str]:
        """Field name -> value (the form stored in the cache file header)."""
        return dataclasses.asdict(self)

    def differences(self, cached: dict[str, Any]) -> list[str]:
        """Human-readable ``field (cached X, now Y)`` entries for every field where ``cached`` differs."""
        return _differences(self.to_dict(), cached)


def _differences(wanted: dict[str, Any], cached: dict[str, Any]) -> list[str]:
    out = [
        f"{name} (cached {cached.get(name)!r}, now {value!r})"
        for name, value in wanted.items()
        if cached.get(name) != value
    ]
    out.extend(f"{name} (unexpected field in cache)" for name in sorted(set(cached) - set(wanted)))
    return out


def atomic_write_bytes(path: str | Path, data: bytes, *, before_replace: Callable[[Path], None] | None = None) -> None:
    """Write ``data`` to ``path`` so that ``path`` always holds either its old or its new complete content.

    Writes a temporary file in the same folder, flushes and fsyncs it, ``os.replace``s it over ``path`` and fsyncs
    the folder. ``before_replace(tmp_path)`` is called between the fsync and the rename (tests use it to simulate a
    crash there). The temporary file is removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync'ed
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def pack_cache_file(key: dict[str, Any], payload: bytes) -> bytes:
    """The bytes of a cache file holding ``payload`` under ``key`` (see the module docstring for the layout)."""
    header = json.dumps(
        {
            "format": _FORMAT_VERSION,
            "key": key,
            "payload_bytes": len(payload),
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        },
        sort_keys=True,
    ).encode()
    footer = END_MAGIC + hashlib.sha256(header + payload).digest()
    return MAGIC + _LEN.pack(len(header)) + header + payload + footer


def unpack_cache_file(data: bytes, *, source: str = "<bytes>") -> tuple[dict[str, Any], bytes]:
    """Split a cache file into (key dict, payload); raise :class:`CacheFileError` saying why it is unusable."""
    fixed = len(MAGIC) + _LEN.size
    if len(data) < fixed or not data.startswith(MAGIC):
        raise CacheFileError(f"{source}: not a moose_ros engine cache file (bad magic or shorter than its header)")
    (header_len,) = _LEN.unpack_from(data, len(MAGIC))
    footer_len = len(END_MAGIC) + hashlib.sha256().digest_size
    if fixed + header_len + footer_len > len(data):
        raise CacheFileError(f"{source}: truncated ({len(data)} bytes, header alone needs {fixed + header_len})")
    header_bytes = data[fixed : fixed + header_len]
    try:
        header = json.loads(header_bytes)
        payload_len = int(header["payload_bytes"])
        key = dict(header["key"])
        payload_sha = str(header["payload_sha256"])
        version = int(header["format"])
    except (ValueError, KeyError, TypeError) as err:
        raise CacheFileError(f"{source}: unreadable header ({err})") from err
    if version != _FORMAT_VERSION:
        raise CacheFileError(f"{source}: cache format {version}, this version reads {_FORMAT_VERSION}")
    expected = fixed + header_len + payload_len + footer_len
    if len(data) != expected:
        raise CacheFileError(f"{source}: size {len(data)} bytes, header promises {expected} (torn or truncated)")
    payload = data[fixed + header_len : fixed + header_len + payload_len]
    footer = data[fixed + header_len + payload_len :]
    if not footer.startswith(END_MAGIC):
        raise CacheFileError(f"{source}: end marker missing (torn write)")
    if footer[len(END_MAGIC) :] != hashlib.sha256(header_bytes + payload).digest():
        raise CacheFileError(f"{source}: checksum mismatch (corrupt file)")
    if hashlib.sha256(payload).hexdigest() != payload_sha:
        raise CacheFileError(f"{source}: payload checksum mismatch (corrupt file)")
    return key, payload


class EngineCache:
    """Serialised engines (and timing caches) in ``cache_dir``, one slot per model name.

    A slot holds one engine: building for a new key replaces the old entry, and the log line says which key
    field changed.
    """

    def __init__(self, cache_dir: str | Path) -> None:
        self.cache_dir = Path(cache_dir)

    def path(self, slot: str, kind: str = "engine") -> Path:
        """File of ``slot`` (a file-name-safe model name) for ``kind`` ``"engine"`` or ``"timing"``."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in slot)
        return self.cache_dir / f"{safe}.{kind}"

    def load(self, slot: str, key: EngineKey | dict[str, str], kind: str = "engine") -> bytes | None:
        """The cached payload for ``key``, or None (logging why: missing, unusable file, or which fields differ)."""
        path = self.path(slot, kind)
        wanted = key.to_dict() if isinstance(key, EngineKey) else dict(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            LOG.info("%s cache %s: no cached file, building", kind, path)
            return None
        except OSError as err:
            LOG.warning("%s cache %s: cannot read (%s), rebuilding", kind, path, err)
            return None
        try:
            cached_key, payload = unpack_cache_file(data, source=str(path))
        except CacheFileError as err:
            LOG.warning("%s cache: %s; rebuilding", kind, err)
            return None
        if cached_key != wanted:
            diffs = _differences(wanted, cached_key)
            LOG.info("%s cache %s: rebuilding because %s differs: %s", kind, path, _names(diffs), "; ".join(diffs))
            return None
        LOG.info("%s cache %s: reusing (%d bytes)", kind, path, len(payload))
        return payload

    def store(
        self,
        slot: str,
        key: EngineKey | dict[str, str],
        payload: bytes,
        kind: str = "engine",
        *,
        before_replace: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write ``payload`` under ``key`` atomically; returns the file path."""
        path = self.path(slot, kind)
        wanted = key.to_dict() if isinstance(key, EngineKey) else dict(key)
        atomic_write_bytes(path, pack_cache_file(wanted, payload), before_replace=before_replace)
        return path

    def load_or_build(self, slot: str, key: EngineKey, build: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(engine bytes, built) — the cached engine for ``key``, or ``build()``'s result, stored for next time."""
        payload = self.load(slot, key)
        if payload is not None:
            return payload, False
        payload = build()
        if not isinstance(payload, (bytes, bytearray, memoryview)) or len(payload) == 0:
            raise BackendError(f"engine build for '{slot}' returned no engine bytes")
        payload = bytes(payload)
        self.store(slot, key, payload)
        LOG.info("engine cache %s: stored new engine (%d bytes)", self.path(slot), len(payload))
        return payload, True

    def invalidate(self, slot: str, kind: str = "engine") -> None:
        """Remove the cached file of ``slot`` (e.g. after the runtime refused to deserialise it)."""
        with contextlib.suppress(FileNotFoundError):
            self.path(slot, kind).unlink()


def _names(diffs: list[str]) -> str:
    return ", ".join(d.split(" ", 1)[0] for d in diffs)


def output_shapes(meta: ModelMeta, input_shape: tuple[int, ...]) -> dict[str, tuple[int, int, int]]:
    """Shapes of the graph outputs for an ``image`` input of ``input_shape`` (N, H, W, 3).

    Every output is [N, H', W'] with (H', W') = ``meta.output_size`` or the input's (H, W).
    """
    if len(input_shape) != 4 or input_shape[3] != 3:
        raise BackendError(f"input shape must be (N, H, W, 3), got {tuple(input_shape)}")
    n, h, w = (int(v) for v in input_shape[:3])
    out_h, out_w = meta.output_size if meta.output_size is not None else (h, w)
    shape = (n, int(out_h), int(out_w))
    names = ["labels", "anomaly"] + [f"anomaly_{s}" for s in meta.scores[1:]]
    return {name: shape for name in names}


class BufferSet:
    """Device buffers for one execution context, reallocated only when the input shape changes.

    ``allocate(shape, dtype_name) -> buffer`` is the device allocator (torch.empty on CUDA in the TensorRT
    backend; anything in tests). ``dtypes`` maps tensor name -> dtype name (``"uint8"``, ``"float32"``, ...).
    """

    def __init__(self, meta: ModelMeta, dtypes: dict[str, str], allocate: Callable[[tuple[int, ...], str], Any]):
        self.meta = meta
        self.dtypes = dict(dtypes)
        self._allocate = allocate
        self.input_shape: tuple[int, ...] | None = None
        self.buffers: dict[str, Any] = {}
        self.allocations = 0

    def ensure(self, input_shape: tuple[int, ...]) -> tuple[dict[str, Any], bool]:
        """(name -> buffer for ``image`` and every output, reallocated?) for an input of ``input_shape``."""
        input_shape = tuple(int(v) for v in input_shape)
        if input_shape == self.input_shape:
            return self.buffers, False
        shapes: dict[str, tuple[int, ...]] = {"image": input_shape, **output_shapes(self.meta, input_shape)}
        missing = sorted(set(shapes) - set(self.dtypes))
        if missing:
            raise BackendError(f"engine has no tensor(s) {missing}; its tensors are {sorted(self.dtypes)}")
        self.buffers = {}  # drop the old ones before allocating the new ones (peak memory)
        self.buffers = {name: self._allocate(shape, self.dtypes[name]) for name, shape in shapes.items()}
        self.input_shape = input_shape
        self.allocations += 1
        return self.buffers, True
