"""The TensorRT-independent half of the TensorRT backend: engine cache, keys, atomic writes, shape profiles.

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
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moose_ros.backends.tensorrt_io import BufferSet, output_shapes  # re-exported (older import path)
from moose_ros.errors import BackendError
from moose_ros.outputs import atomic_write_bytes  # re-exported

__all__ = [
    "CACHE_FILE_MODE",
    "RECIPE_VERSION",
    "BufferSet",
    "CacheFileError",
    "EngineCache",
    "EngineKey",
    "ShapeProfile",
    "atomic_write_bytes",
    "output_shapes",
    "pack_cache_file",
    "timing_cache_key",
    "timing_cache_slot",
    "unpack_cache_file",
]

LOG = logging.getLogger(__name__)

MAGIC = b"MOOSETRT"
END_MAGIC = b"MOOSEEND"
_FORMAT_VERSION = 1
_LEN = struct.Struct("<I")
#: Mode of every cache file: readable by all, writable by its owner.
CACHE_FILE_MODE = 0o644


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

    @classmethod
    def for_max_pixels(cls, max_pixels: int) -> ShapeProfile:
        """The default profile for images of at most ``max_pixels`` pixels: max H = max W = floor(sqrt(max_pixels)).

        A TensorRT profile is a box, so an image with more pixels than the box allows on one side is refused by
        :meth:`contains` even when its area is below ``max_pixels``.
        """
        if max_pixels < 32 * 32:
            raise BackendError(f"shape profile: max_pixels must be >= {32 * 32}, got {max_pixels}")
        side = math.isqrt(int(max_pixels))
        return cls(min=(1, 32, 32), opt=(1, min(720, side), min(1280, side)), max=(2, side, side))

    def clamp(self, static_dims: tuple[int, ...], max_pixels: int | None = None) -> ShapeProfile:
        """This profile fitted to a network input and a pixel budget.

        Args:
            static_dims: the ONNX ``image`` input's dims (N, H, W, 3) as TensorRT reports them, -1 (or any value
                < 1) for a dynamic axis. A static axis pins min = opt = max to its size (TensorRT rejects a
                profile that disagrees with a static dimension, e.g. max N = 2 for an export with N = 1).
            max_pixels: when given, the max H x W is shrunk (keeping its aspect ratio) until H x W <= max_pixels,
                so neither the engine nor a context sized for the max profile holds more pixels than the caller
                will ever send.

        Raises:
            BackendError: the input is not 4-D with 3 channels, or a static axis makes the profile empty.
        """
        dims = tuple(int(v) for v in static_dims)
        if len(dims) != 4 or dims[3] not in (3, -1):
            raise BackendError(f"shape profile: the network input must be (N, H, W, 3), TensorRT reports {dims}")
        lo, mid, hi = list(self.min), list(self.opt), list(self.max)
        if max_pixels is not None and hi[1] * hi[2] > max_pixels:
            scale = math.sqrt(max_pixels / (hi[1] * hi[2]))
            hi[1], hi[2] = max(lo[1], int(hi[1] * scale)), max(lo[2], int(hi[2] * scale))
            while hi[1] * hi[2] > max_pixels and max(hi[1] - lo[1], hi[2] - lo[2]) > 0:  # float rounding
                axis = 1 if hi[1] - lo[1] >= hi[2] - lo[2] else 2
                hi[axis] -= 1
        for axis, size in enumerate(dims[:3]):
            if size >= 1:
                lo[axis] = mid[axis] = hi[axis] = size
            mid[axis] = min(max(mid[axis], lo[axis]), hi[axis])
        return ShapeProfile(min=tuple(lo), opt=tuple(mid), max=tuple(hi))  # type: ignore[arg-type]


#: Version of the build recipe (flags, precision handling, profile rules). Bump it whenever the way an engine is
#: built changes, so engines built by an older recipe are rebuilt instead of reused.
RECIPE_VERSION = 2


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on. Any field that differs forces a rebuild.

    ``compute_capability`` ("9.0") and ``sm_count`` tell apart GPUs that share a name (MIG slices of one GPU
    have different SM counts); ``recipe`` names the build recipe (see :data:`RECIPE_VERSION`): flags and
    precision handling. The defaults exist only for keys written by older versions; the backend sets them all.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    precision: str
    profile: str
    compute_capability: str = ""
    sm_count: str = ""
    recipe: str = ""

    def to_dict(self) -> dict[str, str]:
        """Field name -> value (the form stored in the cache file header)."""
        return dataclasses.asdict(self)

    def differences(self, cached: dict[str, Any]) -> list[str]:
        """Human-readable ``field (cached X, now Y)`` entries for every field where ``cached`` differs."""
        return _differences(self.to_dict(), cached)

    def digest(self) -> str:
        """Hex SHA-256 of the whole key (stable: sorted JSON)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def slot(self, stem: str) -> str:
        """Cache slot name for this key: ``<stem>-<16 hex digits of the key digest>``.

        One slot per key, so two models with the same file stem (or one model at two precisions) keep their own
        engines instead of evicting each other.
        """
        return f"{stem}-{self.digest()[:16]}"


def timing_cache_key(*, tensorrt_version: str, gpu_name: str, compute_capability: str, cuda_version: str) -> dict:
    """Key of a TensorRT timing cache: it holds measured kernel timings, valid for one TensorRT + GPU + CUDA."""
    return {
        "tensorrt_version": tensorrt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "cuda_version": cuda_version,
    }


def timing_cache_slot(key: dict[str, str]) -> str:
    """Slot name of the timing cache for ``key`` (shared by every model built on that GPU + software)."""
    return "timing-" + hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _differences(wanted: dict[str, Any], cached: dict[str, Any]) -> list[str]:
    out = [
        f"{name} (cached {cached.get(name)!r}, now {value!r})"
        for name, value in wanted.items()
        if cached.get(name) != value
    ]
    out.extend(f"{name} (unexpected field in cache)" for name in sorted(set(cached) - set(wanted)))
    return out


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
        atomic_write_bytes(path, pack_cache_file(wanted, payload), mode=CACHE_FILE_MODE, before_replace=before_replace)
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
