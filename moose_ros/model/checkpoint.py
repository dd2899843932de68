"""Self-describing checkpoints and torchvision weight import.

A checkpoint is a ``torch.save``'d dict holding only plain data, so it loads with
``torch.load(weights_only=True)`` (no pickled code is ever executed)::

    {"format": "moose_ros.checkpoint", "format_version": 1,
     "meta": <CheckpointMeta as a JSON string>, "state_dict": {name: tensor}}

Files are written to a temporary file in the target directory and renamed into place (atomic on POSIX).
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from moose_ros.errors import CheckpointError, ConfigError
from moose_ros.normalization import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from moose_ros.model.base import MooseSegmentationModel

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CheckpointMeta",
    "TorchvisionLoadReport",
    "load_torch_file",
    "load_torchvision_state_dict",
    "read_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "moose_ros.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1

#: torchvision DeepLabV3 keys that have no counterpart in the MOoSe trunk and are skipped on import.
_TORCHVISION_IGNORED_PREFIXES = ("aux_classifier.",)


def _jsonable(value: Any, what: str) -> Any:
    """``value`` after a JSON round trip (tuples become lists); ConfigError if it is not JSON data."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"CheckpointMeta.{what} must be JSON-serialisable data: {err}") from err


@dataclass(frozen=True)
class CheckpointMeta:
    """Everything needed to rebuild, run and judge a checkpoint.

    Attributes:
        architecture: builder name without ``moose_`` (one of ``ARCHITECTURES``), e.g. ``"deeplabv3_resnet50"``.
        model_kwargs: builder arguments that rebuild the network (``model.model_kwargs``), JSON data.
        classes: class names, index = train id; ``len(classes) == model_kwargs["num_classes"]``.
        colors: RGB triplets (0..255), one per class.
        ignore_index: label value of void pixels in the training labels (e.g. 255).
        mean, std: per-channel RGB normalisation of images scaled to [0, 1].
        input_size: (H, W) in pixels the network was trained at, or None.
        probe_config: probe settings and state (``num_probes``, ``width``, ``depth``, e.g. ``trained``).
        recipe: training recipe (optimiser, steps, seeds, data ...), JSON data.
        metrics: metrics the checkpoint reached (e.g. ``{"val_miou": 0.72}``), JSON data.
        calibration: post-hoc values measured on held-out data after training, JSON data. Known keys:
            ``operating_points`` = ``{score: {"threshold": t, "display_range": [lo, hi], "split": ..., ...}}``
            (the node's default mask threshold and overlay range per exported score).
    """

    architecture: str
    model_kwargs: dict[str, Any]
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: tuple[int, int] | None = None
    probe_config: dict[str, Any] = field(default_factory=dict)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        setf = object.__setattr__
        setf(self, "classes", tuple(str(name) for name in self.classes))
        try:
            colors = tuple((int(c[0]), int(c[1]), int(c[2])) for c in self.colors)
            setf(self, "mean", tuple(float(v) for v in self.mean))
            setf(self, "std", tuple(float(v) for v in self.std))
            if self.input_size is not None:
                setf(self, "input_size", (int(self.input_size[0]), int(self.input_size[1])))
        except (TypeError, ValueError, IndexError) as err:
            raise ConfigError(
                f"CheckpointMeta: colors, mean, std and input_size must be numeric tuples: {err}"
            ) from err
        setf(self, "colors", colors)
        if len(colors) != len(self.classes):
            raise ConfigError(
                f"CheckpointMeta: {len(colors)} colors for {len(self.classes)} classes; need one per class"
            )
        if any(not 0 <= v <= 255 for c in colors for v in c):
            raise ConfigError("CheckpointMeta: colors must be RGB triplets in 0..255")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"CheckpointMeta: mean/std need 3 values with std > 0, got {self.mean} / {self.std}")
        if self.input_size is not None and min(self.input_size) < 1:
            raise ConfigError(f"CheckpointMeta: input_size must be positive (H, W), got {self.input_size}")
        for name in ("model_kwargs", "probe_config", "recipe", "metrics", "calibration"):
            setf(self, name, _jsonable(dict(getattr(self, name)), name))
        num_classes = self.model_kwargs.get("num_classes")
        if num_classes is not None and num_classes != len(self.classes):
            raise ConfigError(
                f"CheckpointMeta: model_kwargs num_classes={num_classes} but {len(self.classes)} class names given"
            )

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.classes)

    @classmethod
    def for_model(
        cls, model: MooseSegmentationModel, *, classes: tuple[str, ...] | list[str], colors: Any, **fields_: Any
    ) -> CheckpointMeta:
        """Meta for ``model``: architecture, model_kwargs and the probe layout come from the model.

        ``fields_`` sets the remaining attributes; a given ``probe_config`` is merged over
        ``{"num_probes", "width", "depth"}`` taken from the model.
        """
        kwargs = model.model_kwargs
        probe_config = {
            "num_probes": model.num_probes,
            "width": kwargs.get("probe_width"),
            "depth": kwargs.get("probe_depth"),
            **dict(fields_.pop("probe_config", {}) or {}),
        }
        return cls(
            architecture=model.architecture,
            model_kwargs=dict(kwargs),
            classes=tuple(classes),
            colors=colors,
            probe_config=probe_config,
            **fields_,
        )

    def to_json(self) -> str:
        """Serialise to the JSON string stored in the checkpoint."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> CheckpointMeta:
        """Parse :meth:`to_json` output; ``source`` names the file in error messages (CheckpointError)."""
        try:
            raw = json.loads(text)
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(raw) - names)
            if unknown:
                raise CheckpointError(f"{source}: unknown meta fields {unknown}; known: {sorted(names)}")
            return cls(**raw)
        except (ConfigError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{source}: invalid checkpoint meta: {err}") from err


def save_checkpoint(path: str | os.PathLike[str], model: MooseSegmentationModel, meta: CheckpointMeta) -> Path:
    """Write ``model``'s state_dict and ``meta`` to ``path`` atomically (temporary file + rename).

    Raises:
        CheckpointError: ``meta`` does not describe ``model`` (architecture or model_kwargs differ; both values
            are named).
    """
    path = Path(path)
    if meta.architecture != model.architecture:
        raise CheckpointError(
            f"{path}: meta architecture {meta.architecture!r} differs from the model's {model.architecture!r}"
        )
    model_kwargs = _jsonable(model.model_kwargs, "model_kwargs")
    if meta.model_kwargs != model_kwargs:
        diff = sorted(k for k in set(meta.model_kwargs) | set(model_kwargs)
                      if meta.model_kwargs.get(k) != model_kwargs.get(k))
        details = ", ".join(f"{k}: meta {meta.model_kwargs.get(k)!r} vs model {model_kwargs.get(k)!r}" for k in diff)
        raise CheckpointError(f"{path}: meta model_kwargs do not describe the model ({details})")
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "meta": meta.to_json(),
        "state_dict": state,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _unpickler_reason(err: Exception) -> str:
    """The line of torch's weights_only error that names the blocked object (not its advice to disable it)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line]
    return (named or lines or ["unknown reason"])[0]


def load_torch_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True`` (tensors and plain data only; no code runs).

    Raises:
        CheckpointError: missing file, not the zip format of ``torch.save``, truncated or unreadable, or a file
            that would need pickled code or objects beyond tensors and plain data (the blocked name is given).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as handle:
            damaged = handle.read(4) == b"PK\x03\x04"  # a zip's start without its central directory
        if damaged:
            raise CheckpointError(f"{path}: not a readable torch file (truncated or damaged: the zip directory at "
                                  "its end is missing)")
        raise CheckpointError(f"{path}: not a torch checkpoint (expected the zip format written by torch.save)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: the file needs pickled code or objects beyond tensors and plain data "
            f"(only weights_only=True loading is allowed; {_unpickler_reason(err)})"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch file (truncated or damaged?): {reason}") from err


def read_checkpoint(
    path: str | os.PathLike[str], map_location: Any = "cpu"
) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    """Read a checkpoint's state_dict and meta without building a model (``weights_only=True``).

    Raises:
        CheckpointError: missing file, a file that would need pickled code, or not a moose_ros checkpoint.
    """
    path = Path(path)
    payload = load_torch_file(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a moose_ros checkpoint (expected a dict with format={CHECKPOINT_FORMAT!r})")
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format_version {version!r}, this code reads "
                              f"{CHECKPOINT_FORMAT_VERSION}")
    state, meta_text = payload.get("state_dict"), payload.get("meta")
    if not isinstance(state, dict) or not isinstance(meta_text, str):
        raise CheckpointError(f"{path}: checkpoint lacks 'state_dict' (dict) or 'meta' (JSON string)")
    return state, CheckpointMeta.from_json(meta_text, source=str(path))


class TorchvisionLoadReport(NamedTuple):
    """What :func:`load_torchvision_state_dict` did not load.

    Attributes:
        ignored_keys: source keys skipped on purpose (the auxiliary classifier: MOoSe has none).
        missing_keys: trunk keys the source lacked (only possible with ``strict=False``).
        unexpected_keys: source keys with no trunk counterpart (only possible with ``strict=False``).
        untouched_probe_keys: probe keys (never in a torchvision file; left as they were).
    """

    ignored_keys: tuple[str, ...]
    missing_keys: tuple[str, ...]
    unexpected_keys: tuple[str, ...]
    untouched_probe_keys: tuple[str, ...]


def load_torchvision_state_dict(
    model: MooseSegmentationModel, state_dict: dict[str, torch.Tensor], *, strict: bool = True
) -> TorchvisionLoadReport:
    """Load a torchvision ``DeepLabV3`` state_dict (``backbone.*``, ``classifier.*``) into ``model``'s trunk.

    The names match one to one for the ``deeplabv3_*`` architectures built with torchvision's head width
    (``aspp_channels=256``). ``aux_classifier.*`` keys are skipped and reported; probes are never touched.
    With ``strict=True`` (default) every trunk key must be present and every other key must belong to the trunk;
    shapes must always match.

    Raises:
        CheckpointError: missing/unexpected keys (strict) or a shape mismatch, naming the keys and shapes.
    """
    from moose_ros.model.base import PROBES_ATTR

    own = model.state_dict()
    probe_prefix = f"{PROBES_ATTR}."
    trunk_keys = {k for k in own if not k.startswith(probe_prefix)}
    ignored = tuple(sorted(k for k in state_dict if k.startswith(_TORCHVISION_IGNORED_PREFIXES)))
    source = {k: v for k, v in state_dict.items() if not k.startswith(_TORCHVISION_IGNORED_PREFIXES)}
    missing = tuple(sorted(trunk_keys - set(source)))
    unexpected = tuple(sorted(set(source) - trunk_keys))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"torchvision state_dict does not fit {model.architecture}'s trunk: missing {list(missing[:8])}"
            f"{' ...' if len(missing) > 8 else ''} ({len(missing)}), unexpected {list(unexpected[:8])}"
            f"{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)})"
        )
    for key in sorted(trunk_keys & set(source)):
        if tuple(source[key].shape) != tuple(own[key].shape):
            raise CheckpointError(f"torchvision state_dict key {key!r} has shape {tuple(source[key].shape)}, "
                                  f"{model.architecture} expects {tuple(own[key].shape)}")
    model.load_state_dict({k: source[k] for k in trunk_keys & set(source)}, strict=False)
    probes = tuple(sorted(k for k in own if k.startswith(probe_prefix)))
    return TorchvisionLoadReport(ignored, missing, unexpected, probes)
