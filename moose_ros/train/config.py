"""Training recipes: frozen dataclasses loaded from YAML, overridable with ``key=value`` strings.

A recipe file has four sections plus a seed::

    seed: 0
    data:   {kind: cityscapes, root: data/synthstreet, train_split: train, val_split: val, ...}
    model:  {architecture: deeplabv3_mobilenet_v3_large, kwargs: {num_classes: 19, ...}}
    base:   {steps: 600, batch_size: 8, optimizer: sgd, lr: 0.02, crop: [256, 512], ...}
    probes: {...}   # same fields as base
    refit:  {...}   # same fields as base

Every stage section is a :class:`StageConfig`; missing fields take the dataclass defaults. Overrides use dotted
paths (``base.lr=0.01``, ``model.kwargs.probe_depth=3``, ``seed=2``) and YAML value syntax.
Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moose_ros.errors import ConfigError

__all__ = [
    "STAGES",
    "DataConfig",
    "ModelConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "load_config",
]

#: Training stages: full network, probes on the frozen network, fair refit of the global head.
STAGES: tuple[str, ...] = ("base", "probes", "refit")

_OPTIMIZERS = ("sgd", "adamw")
_AMP = ("auto", "off", "fp16", "bf16")


@dataclass(frozen=True)
class DataConfig:
    """Where the training data lives.

    Attributes:
        kind: dataset reader for train/val (a name accepted by ``moose_ros.data.open_dataset``), e.g. "cityscapes".
        root: dataset root directory (relative paths are resolved against the working directory).
        train_split, val_split: split names passed to the reader.
        val_limit: evaluate only the first N validation images (None = all).
        ood_kind, ood_root, ood_split: the held-out OoD test set used by the OoD table (not by training).
        synth_seed, ood_seed: seeds the SynthStreet train/val and OoD test data were generated with (recorded in
            checkpoint meta; informative).
    """

    kind: str = "cityscapes"
    root: str = "data/synthstreet"
    train_split: str = "train"
    val_split: str = "val"
    val_limit: int | None = None
    ood_kind: str = "fishyscapes_laf"
    ood_root: str | None = None
    ood_split: str | None = None
    synth_seed: int | None = None
    ood_seed: int | None = None


@dataclass(frozen=True)
class ModelConfig:
    """Which network to build: ``moose_ros.model.build_model(architecture, **kwargs)``."""

    architecture: str = "deeplabv3_mobilenet_v3_large"
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StageConfig:
    """Hyper-parameters of one training stage.

    Attributes:
        steps: optimizer steps (global batches); the stage ends there unless ``patience`` stops it earlier.
        batch_size: GLOBAL batch size (images per optimizer step, summed over all ranks and accumulation steps).
        accum: gradient-accumulation steps per optimizer step on each rank (micro-batch =
            batch_size / (world_size * accum)).
        optimizer: "sgd" (momentum, nesterov off) or "adamw".
        lr: peak learning rate; poly schedule ``lr * (1 - step/steps) ** poly_power`` after ``warmup_steps``.
        crop: (H, W) training crop in pixels, or None for the full (scaled) image.
        scale: (min, max) random rescale factors applied before the crop; (1, 1) = none.
        flip: random horizontal flip with probability 0.5.
        resize: (H, W) every image is first resized to (None = native size); val uses it too.
        val_every: validate every N steps (0 = only at the end).
        patience: stop after this many validations without a val-mIoU gain of at least ``min_delta``
            (None = never stop early). The stage's saved result is the best validated state.
        amp: "auto" (fp16 autocast + GradScaler on CUDA, off on CPU), "off", "fp16", "bf16".
        init: checkpoint the stage starts from ("{out}" expands to the output directory); base may leave None.
        cache_features: probes/refit only: cache the frozen trunk's features once per image (exact; the
            augmentation is then limited to the deterministic flip copies given by ``flip``).
        bn_recalibrate: base only: before each validation, re-estimate the trunk's BatchNorm statistics on this
            many un-augmented training images (cumulative average; 0 = keep the running averages).
        save_every: also write the resumable ``<stage>_last.pt`` every N steps (0 = only at validations).
        channels_last: NHWC memory layout (much faster depthwise-conv backward on CPU).
        workers: DataLoader worker processes per rank.
        log_every: tqdm postfix / log refresh interval in steps.
    """

    steps: int = 100
    batch_size: int = 8
    accum: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    warmup_steps: int = 0
    crop: tuple[int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    flip: bool = True
    resize: tuple[int, int] | None = None
    val_every: int = 0
    patience: int | None = None
    min_delta: float = 0.002
    amp: str = "auto"
    init: str | None = None
    cache_features: bool = False
    bn_recalibrate: int = 0
    save_every: int = 0
    channels_last: bool = True
    workers: int = 0
    log_every: int = 10

    def validate(self, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where`` (e.g. "probes") for any out-of-range value."""
        if self.steps < 1:
            raise ConfigError(f"{where}.steps={self.steps}: expected >= 1")
        if self.batch_size < 1 or self.accum < 1:
            raise ConfigError(f"{where}.batch_size={self.batch_size}, accum={self.accum}: expected >= 1")
        if self.optimizer not in _OPTIMIZERS:
            raise ConfigError(f"{where}.optimizer='{self.optimizer}': allowed values {', '.join(_OPTIMIZERS)}")
        if not self.lr > 0:
            raise ConfigError(f"{where}.lr={self.lr}: expected > 0")
        if self.amp not in _AMP:
            raise ConfigError(f"{where}.amp='{self.amp}': allowed values {', '.join(_AMP)}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(f"{where}.scale={self.scale}: expected 0 < min <= max")
        for name in ("crop", "resize"):
            size = getattr(self, name)
            if size is not None and (len(size) != 2 or min(size) < 1):
                raise ConfigError(f"{where}.{name}={size}: expected [H, W] with positive integers")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{where}.patience={self.patience}: expected >= 1 or null")


@dataclass(frozen=True)
class TrainConfig:
    """A whole training recipe (see the module docstring for the YAML layout)."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    base: StageConfig = field(default_factory=StageConfig)
    probes: StageConfig = field(default_factory=StageConfig)
    refit: StageConfig = field(default_factory=StageConfig)
    source: str = "<defaults>"

    def stage(self, name: str) -> StageConfig:
        """The :class:`StageConfig` of stage ``name`` (one of :data:`STAGES`)."""
        if name not in STAGES:
            raise ConfigError(f"stage '{name}' is unknown; allowed values: {', '.join(STAGES)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable dict (tuples become lists), e.g. for checkpoint meta."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuple_or_none(value: Any, where: str, cast: type) -> tuple | None:
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise ConfigError(f"{where}={value!r}: expected a list like [a, b] or null")
    try:
        return tuple(cast(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}={value!r}: {err}") from err


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else key
        if cls is StageConfig and key in ("crop", "resize"):
            value = _tuple_or_none(value, path, int)
        elif cls is StageConfig and key == "scale":
            value = _tuple_or_none(value, path, float)
        elif cls is ModelConfig and key == "kwargs":
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: expected a mapping of builder arguments")
            value = dict(value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


def config_from_dict(raw: Mapping[str, Any], *, source: str = "<dict>") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a parsed YAML mapping; ``source`` names it in errors."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a training recipe must be a mapping at the top level")
    allowed = {"seed", "data", "model", *STAGES}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(unknown)}; allowed: {sorted(allowed)}")
    try:
        seed = int(raw.get("seed", 0))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: seed={raw.get('seed')!r} is not an integer") from err
    cfg = TrainConfig(
        seed=seed,
        data=_build(DataConfig, raw.get("data"), f"{source}: data"),
        model=_build(ModelConfig, raw.get("model"), f"{source}: model"),
        **{s: _build(StageConfig, raw.get(s), f"{source}: {s}") for s in STAGES},
        source=source,
    )
    for name in STAGES:
        cfg.stage(name).validate(f"{source}: {name}")
    return cfg


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``"a.b.c=value"`` applied (value parsed as YAML)."""
    tree = yaml.safe_load(yaml.safe_dump(_plain(raw))) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}': expected key=value, e.g. probes.lr=0.01")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set '{item}': value is not valid YAML: {err}") from err
        _set_path(tree, key.strip(), value)
    return tree


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a recipe from YAML ``path`` (None = defaults) and apply ``overrides`` (``key=value`` strings)."""
    raw: Any = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise ConfigError(f"cannot read training recipe {path}: {err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"training recipe {path} is not valid YAML: {err}") from err
    return config_from_dict(apply_overrides(raw, overrides), source=source)
