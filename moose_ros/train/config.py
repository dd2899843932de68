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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from moose_ros.data.registry import DATASET_KINDS, dataset_kind
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
        class_balance: exponent of the per-class loss weights ``(median freq / freq) ** class_balance``
            counted on up to 500 training labels (0 = plain cross-entropy; 0.5 lifts rare classes).
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
    class_balance: float = 0.0
    workers: int = 0
    log_every: int = 10

    def validate(self, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where`` (e.g. "probes") for any value of the wrong type or range."""
        check_fields(dataclasses.asdict(self), STAGE_RULES, where)
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(f"{where}.scale={list(self.scale)}: expected 0 < min <= max")


@dataclass(frozen=True)
class Rule:
    """The type and range one recipe key accepts.

    ``kind``: "int", "float", "bool", "str", "choice" (one of ``choices``), "kind" (a dataset reader name),
    "pair_int" / "pair_float" (a two-element list), "mapping" (string keys). ``minimum`` / ``maximum`` bound numbers
    and pair elements (``exclusive``: the minimum itself is not allowed); ``optional``: null is allowed.
    """

    kind: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False
    optional: bool = False
    choices: tuple[str, ...] = ()

    def describe(self) -> str:
        """What the key accepts, in words (the end of every error message)."""
        noun = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a non-empty string",
                "kind": "a dataset kind", "pair_int": "a list [H, W] of two integers",
                "pair_float": "a list [a, b] of two numbers", "mapping": "a mapping with string keys",
                "choice": f"one of {', '.join(self.choices)}"}[self.kind]
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive else '>='} {self.minimum:g}")
        if self.maximum is not None:
            bounds.append(f"< {self.maximum:g}")
        if bounds:
            noun += (" each " if self.kind.startswith("pair") else " ") + " and ".join(bounds)
        return noun + (", or null" if self.optional else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _in_range(value: float, rule: Rule) -> bool:
    if rule.minimum is not None and (value <= rule.minimum if rule.exclusive else value < rule.minimum):
        return False
    return rule.maximum is None or value < rule.maximum


def _valid(value: Any, rule: Rule) -> bool:
    if value is None:
        return rule.optional
    kind = rule.kind
    if kind in ("int", "float"):
        return (_is_int(value) if kind == "int" else _is_number(value)) and _in_range(value, rule)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str) and bool(value.strip())
    if kind == "choice":
        return isinstance(value, str) and value in rule.choices
    if kind == "kind":
        return isinstance(value, str) and dataset_kind(value) is not None
    if kind in ("pair_int", "pair_float"):
        ok = _is_int if kind == "pair_int" else _is_number
        return (isinstance(value, (list, tuple)) and len(value) == 2
                and all(ok(v) and _in_range(v, rule) for v in value))
    if kind == "mapping":
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    raise AssertionError(f"unknown rule kind {kind}")  # a bug in the rule tables, not in the recipe


def check_fields(values: Mapping[str, Any], rules: Mapping[str, Rule], where: str) -> None:
    """Raise :class:`ConfigError` for the first value of ``values`` that its :class:`Rule` rejects.

    The message names ``where`` and the key, the value received and what the key accepts, e.g.
    ``"r.yaml: base.steps='ten': expected an integer >= 1"``.
    """
    for key, value in values.items():
        rule = rules[key]
        if not _valid(value, rule):
            shown = list(value) if isinstance(value, tuple) else value
            allowed = rule.describe()
            if rule.kind == "kind":
                allowed += f" ({', '.join(DATASET_KINDS)} or an alias)"
            path = f"{where} {key}" if where.endswith(":") else f"{where}.{key}"
            raise ConfigError(f"{path}={shown!r}: expected {allowed}")


_POSITIVE = Rule("int", 1)
_COUNT = Rule("int", 0)
_SEED = Rule("int", 0, optional=True)

#: what every :class:`StageConfig` key accepts
STAGE_RULES: dict[str, Rule] = {
    "steps": _POSITIVE, "batch_size": _POSITIVE, "accum": _POSITIVE,
    "optimizer": Rule("choice", choices=_OPTIMIZERS), "lr": Rule("float", 0, exclusive=True),
    "momentum": Rule("float", 0, 1), "weight_decay": Rule("float", 0), "poly_power": Rule("float", 0),
    "warmup_steps": _COUNT, "crop": Rule("pair_int", 1, optional=True), "scale": Rule("pair_float", 0, exclusive=True),
    "flip": Rule("bool"), "resize": Rule("pair_int", 1, optional=True), "val_every": _COUNT,
    "patience": Rule("int", 1, optional=True), "min_delta": Rule("float", 0), "amp": Rule("choice", choices=_AMP),
    "init": Rule("str", optional=True), "cache_features": Rule("bool"), "bn_recalibrate": _COUNT,
    "save_every": _COUNT, "channels_last": Rule("bool"),
    "class_balance": Rule("float", 0, 2), "workers": _COUNT, "log_every": _POSITIVE,
}
#: what every :class:`DataConfig` key accepts
DATA_RULES: dict[str, Rule] = {
    "kind": Rule("kind"), "root": Rule("str"), "train_split": Rule("str"), "val_split": Rule("str"),
    "val_limit": Rule("int", 1, optional=True), "ood_kind": Rule("kind"), "ood_root": Rule("str", optional=True),
    "ood_split": Rule("str", optional=True), "synth_seed": _SEED, "ood_seed": _SEED,
}
#: what every :class:`ModelConfig` key accepts
MODEL_RULES: dict[str, Rule] = {"architecture": Rule("str"), "kwargs": Rule("mapping")}
#: the top-level scalar keys
TOP_RULES: dict[str, Rule] = {"seed": Rule("int", 0)}


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


def _build(cls: type, raw: Any, where: str, rules: Mapping[str, Rule]) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, raw)) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    check_fields(raw, rules, where)
    values = {str(k): tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    if "kwargs" in values:
        values["kwargs"] = dict(values["kwargs"])
    return cls(**values)


def config_from_dict(raw: Mapping[str, Any], *, source: str = "<dict>") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a parsed YAML mapping; ``source`` names it in errors."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a training recipe must be a mapping at the top level")
    allowed = {"seed", "data", "model", *STAGES}
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(map(str, unknown))}; "
                          f"allowed: {', '.join(sorted(allowed))}")
    check_fields({k: raw[k] for k in ("seed",) if k in raw}, TOP_RULES, f"{source}:")
    cfg = TrainConfig(
        seed=int(raw.get("seed", 0)),
        data=_build(DataConfig, raw.get("data"), f"{source}: data", DATA_RULES),
        model=_build(ModelConfig, raw.get("model"), f"{source}: model", MODEL_RULES),
        **{s: _build(StageConfig, raw.get(s), f"{source}: {s}", STAGE_RULES) for s in STAGES},
        source=source,
    )
    for name in STAGES:
        cfg.stage(name).validate(f"{source}: {name}")
    return cfg


_SECTIONS: dict[str, type] = {"data": DataConfig, "model": ModelConfig, **{name: StageConfig for name in STAGES}}


def _check_override_path(item: str, keys: list[str]) -> None:
    """Raise :class:`ConfigError` unless ``keys`` (a dotted ``--set`` path) names a recipe value."""
    head = keys[0]
    if head == "seed" and len(keys) == 1:
        return
    if head not in _SECTIONS:
        allowed = ", ".join(["seed", *sorted(_SECTIONS)])
        raise ConfigError(f"--set {item}: unknown top-level key '{head}'; allowed: {allowed}")
    fields = sorted(f.name for f in dataclasses.fields(_SECTIONS[head]))
    if len(keys) == 1:
        raise ConfigError(f"--set {item}: '{head}' is a section; set one of its keys, e.g. {head}.{fields[0]}=...")
    if keys[1] not in fields:
        raise ConfigError(f"--set {item}: unknown key '{head}.{keys[1]}'; allowed: {', '.join(fields)}")
    if len(keys) > 2 and (head, keys[1]) != ("model", "kwargs"):
        raise ConfigError(f"--set {item}: '{head}.{keys[1]}' is a value, not a section")
    if any(not key for key in keys):
        raise ConfigError(f"--set {item}: empty key in the dotted path")


def _set_path(tree: dict[str, Any], item: str, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    _check_override_path(item, keys)
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item}: '{key}' is not a section (it holds {child!r})")
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
        _set_path(tree, item, key.strip(), value)
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
