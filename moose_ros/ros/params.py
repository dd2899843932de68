"""The node's parameters: declared once, validated in one place, frozen into a :class:`NodeConfig`.

:data:`PARAMETERS` lists every parameter with its default and meaning (``config/moose.yaml`` mirrors it).
:func:`config_from_values` turns raw values (from ROS parameters, YAML, or a dict in tests) into a validated
:class:`NodeConfig` or raises :class:`ConfigError` naming the parameter and the allowed values.
:func:`update_config` applies run-time changes (only :data:`DYNAMIC` parameters) with the same checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from moose_ros.errors import ConfigError
from moose_ros.visualize import COLORMAPS, display_range

__all__ = [
    "BACKENDS",
    "DYNAMIC",
    "PARAMETERS",
    "NodeConfig",
    "ParamSpec",
    "config_from_values",
    "config_to_values",
    "operating_range",
    "operating_threshold",
    "plain_value",
    "resolve_mask_score",
    "resolve_score",
    "update_config",
]

BACKENDS = ("auto", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "tensorrt", "torch")
TRANSPORTS = ("raw", "compressed", "both")
RELIABILITIES = ("best_effort", "reliable")
_CAMERA_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: name, default (None = unset), and a one-line description with units."""

    name: str
    default: Any
    description: str
    low: float | None = None  #: inclusive lower bound shown in the ROS descriptor (rqt slider), None = none
    high: float | None = None  #: inclusive upper bound shown in the ROS descriptor, None = none


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model", "", "fused-graph .onnx path; empty = the bundled models/moose_synthstreet.onnx"),
    ParamSpec("backend", "auto", f"inference backend: {', '.join(BACKENDS)}"),
    ParamSpec("managed", False, "lifecycle node: configure loads the model, activate subscribes and publishes, "
              "deactivate stops, cleanup frees the backend"),
    ParamSpec("threads", 0, "CPU threads for the backend; 0 = backend default", 0, 1024),
    ParamSpec("score", "", "exported score to publish on ~/anomaly; empty = the model's first score"),
    ParamSpec("threshold", math.nan, "~/anomaly/mask is 255 where the raw score > threshold; .nan (unset) = the "
              "model's threshold for the score, else 0.0 (run-time changeable)"),
    ParamSpec("roi", "auto", "region of ~/anomaly/mask: image (every pixel), road (the score gated to the predicted "
              "drivable area, needs a model exported with --road-gate), auto = road when the model has the gated "
              "score, else image (run-time changeable)"),
    ParamSpec("overlay_alpha", 0.5, "heatmap weight in ~/anomaly/overlay, [0, 1] (run-time changeable)", 0.0, 1.0),
    ParamSpec("colormap", "turbo", f"overlay colour map: {', '.join(COLORMAPS)} (run-time changeable)"),
    ParamSpec("score_range", [0.0, 0.0], "[lo, hi] raw-score display range for the overlay; [0, 0] = the model's range "
              "for the score, else per-frame percentiles (run-time changeable)"),
    ParamSpec("output_size", [0, 0], "[height, width] of the outputs in pixels, height x width <= max_pixels; "
              "[0, 0] = input size"),
    ParamSpec("input_transport", "raw", f"subscribe to image (raw), image/compressed, or both: {TRANSPORTS}"),
    ParamSpec("input_reliability", "best_effort", f"input QoS reliability: {', '.join(RELIABILITIES)}"),
    ParamSpec("input_depth", 1, "input QoS history depth (>= 1)", 1, 1000),
    ParamSpec("cameras", None, "camera names -> topics <camera>/image, outputs ~/<camera>/...; unset = one camera"),
    ParamSpec("publish_segmentation", True, "publish ~/segmentation (mono8 class ids)"),
    ParamSpec("publish_segmentation_color", True, "publish ~/segmentation/color (rgb8)"),
    ParamSpec("publish_anomaly", True, "publish ~/anomaly (32FC1 raw score)"),
    ParamSpec("publish_overlay", True, "publish ~/anomaly/overlay (rgb8)"),
    ParamSpec("publish_mask", True, "publish ~/anomaly/mask (mono8 0/255)"),
    ParamSpec("publish_camera_info", True, "subscribe camera_info, publish ~/camera_info scaled to the output size"),
    ParamSpec("max_pixels", 16_777_216, "reject input images with more pixels than this", 1, 2**31 - 1),
    ParamSpec("diagnostics_period", 1.0, "seconds between /diagnostics messages, (0, 3600]", 0.0, 3600.0),
    ParamSpec("max_drop_ratio", 0.5, "diagnostics WARN when dropped / received over a period exceeds this", 0.0, 1.0),
    ParamSpec("max_latency_ms", 500.0, "diagnostics WARN when p95 latency (stamp -> publish) exceeds this", 0.0, 1e7),
    ParamSpec("input_timeout_s", 3.0, "diagnostics STALE for a camera that received nothing for this long (s)",
              0.0, 86400.0),
    ParamSpec("warmup", True, "run one inference at start-up so the first frame is not slow"),
)

#: Parameters that may change while the node runs.
DYNAMIC = frozenset({"threshold", "overlay_alpha", "colormap", "score_range", "score", "roi"})
#: ``roi`` values.
ROIS: tuple[str, ...] = ("auto", "image", "road")

_SPECS = {spec.name: spec for spec in PARAMETERS}


@dataclass(frozen=True)
class NodeConfig:
    """Validated node configuration. Sizes in pixels, times in seconds unless the name says ``_ms``."""

    model: str = ""
    backend: str = "auto"
    managed: bool = False
    threads: int | None = None
    score: str = ""
    threshold: float | None = None
    roi: str = "auto"
    overlay_alpha: float = 0.5
    colormap: str = "turbo"
    score_range: tuple[float, float] | None = None
    output_size: tuple[int, int] | None = None
    input_transport: str = "raw"
    input_reliability: str = "best_effort"
    input_depth: int = 1
    cameras: tuple[str, ...] = ("",)
    publish_segmentation: bool = True
    publish_segmentation_color: bool = True
    publish_anomaly: bool = True
    publish_overlay: bool = True
    publish_mask: bool = True
    publish_camera_info: bool = True
    max_pixels: int = 16_777_216
    diagnostics_period: float = 1.0
    max_drop_ratio: float = 0.5
    max_latency_ms: float = 500.0
    input_timeout_s: float = 3.0
    warmup: bool = True


def _fail(name: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"parameter '{name}' = {value!r} is invalid: expected {expected}")


def _string(name: str, value: Any, choices: Sequence[str] | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(name, value, "a string" + (f", one of {', '.join(choices)}" if choices else ""))
    if choices is not None and value not in choices:
        raise _fail(name, value, f"one of {', '.join(choices)}")
    return value


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(name, value, f"an integer >= {minimum}")
    return int(value)


def _float(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *, open_low: bool = False) -> float:
    bounds = "" if math.isinf(low) and math.isinf(high) else f" in {'(' if open_low else '['}{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, value, f"a finite number{bounds}")
    if value < low or value > high or (open_low and value == low):
        raise _fail(name, value, f"a number{bounds}")
    return float(value)


def _threshold(value: Any) -> float | None:
    """``threshold``: NaN means unset (the model's operating point decides), else a finite number."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail("threshold", value, "a finite number, or .nan (unset) for the model's threshold")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(name, value, "true or false")
    return value


def _pair(name: str, value: Any, kind: type) -> tuple[Any, Any]:
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    ok_types = (int,) if kind is int else (int, float)
    if items is None or len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, ok_types) for v in items):
        raise _fail(name, value, f"a list of two {'integers' if kind is int else 'numbers'}")
    return kind(items[0]), kind(items[1])


def _cameras(value: Any) -> tuple[str, ...]:
    if value is None:
        return ("",)
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if not items or any(not isinstance(v, str) or not _CAMERA_RE.match(v) for v in items):
        raise _fail("cameras", value, "a non-empty list of names like 'front' or 'left/camera' (letters, digits, _)")
    if len(set(items)) != len(items):
        raise _fail("cameras", value, "distinct camera names")
    return tuple(items)


def _build(values: Mapping[str, Any]) -> NodeConfig:
    v = {spec.name: values.get(spec.name, spec.default) for spec in PARAMETERS}
    lo, hi = _pair("score_range", v["score_range"], float)
    if not (math.isfinite(lo) and math.isfinite(hi)) or (hi <= lo and (lo, hi) != (0.0, 0.0)):
        raise _fail("score_range", v["score_range"], "[lo, hi] with lo < hi, or [0, 0] for automatic")
    height, width = _pair("output_size", v["output_size"], int)
    max_pixels = _int("max_pixels", v["max_pixels"], 1)
    if height < 0 or width < 0 or (height == 0) != (width == 0) or height * width > max_pixels:
        raise _fail("output_size", v["output_size"],
                    f"[height, width] both > 0 with height x width <= max_pixels ({max_pixels}), or [0, 0] for the "
                    "input size")
    threads = _int("threads", v["threads"], 0)
    return NodeConfig(
        model=_string("model", v["model"]),
        backend=_string("backend", v["backend"], BACKENDS),
        managed=_bool("managed", v["managed"]),
        threads=threads if threads > 0 else None,
        score=_string("score", v["score"]),
        threshold=_threshold(v["threshold"]),
        roi=_string("roi", v["roi"], ROIS),
        overlay_alpha=_float("overlay_alpha", v["overlay_alpha"], 0.0, 1.0),
        colormap=_string("colormap", v["colormap"], tuple(COLORMAPS)),
        score_range=None if (lo, hi) == (0.0, 0.0) else (lo, hi),
        output_size=None if height == 0 else (height, width),
        input_transport=_string("input_transport", v["input_transport"], TRANSPORTS),
        input_reliability=_string("input_reliability", v["input_reliability"], RELIABILITIES),
        input_depth=_int("input_depth", v["input_depth"], 1),
        cameras=_cameras(v["cameras"]),
        publish_segmentation=_bool("publish_segmentation", v["publish_segmentation"]),
        publish_segmentation_color=_bool("publish_segmentation_color", v["publish_segmentation_color"]),
        publish_anomaly=_bool("publish_anomaly", v["publish_anomaly"]),
        publish_overlay=_bool("publish_overlay", v["publish_overlay"]),
        publish_mask=_bool("publish_mask", v["publish_mask"]),
        publish_camera_info=_bool("publish_camera_info", v["publish_camera_info"]),
        max_pixels=max_pixels,
        diagnostics_period=_float("diagnostics_period", v["diagnostics_period"], 0.0, 3600.0, open_low=True),
        max_drop_ratio=_float("max_drop_ratio", v["max_drop_ratio"], 0.0, 1.0),
        max_latency_ms=_float("max_latency_ms", v["max_latency_ms"], 0.0, 1e7, open_low=True),
        input_timeout_s=_float("input_timeout_s", v["input_timeout_s"], 0.0, 86400.0, open_low=True),
        warmup=_bool("warmup", v["warmup"]),
    )


def config_from_values(values: Mapping[str, Any]) -> NodeConfig:
    """Validate raw parameter values (missing names take their defaults) into a :class:`NodeConfig`.

    Raises:
        ConfigError: an unknown parameter name, or a value of the wrong type or out of range; the message names
            the parameter and what is allowed.
    """
    unknown = sorted(set(values) - set(_SPECS))
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(repr(u) for u in unknown)}; known: {', '.join(sorted(_SPECS))}"
        )
    return _build(values)


def config_to_values(config: NodeConfig) -> dict[str, Any]:
    """The raw parameter values that rebuild ``config`` (inverse of :func:`config_from_values`)."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values["threads"] = config.threads if config.threads is not None else 0
    values["threshold"] = config.threshold if config.threshold is not None else math.nan
    values["score_range"] = list(config.score_range) if config.score_range is not None else [0.0, 0.0]
    values["output_size"] = list(config.output_size) if config.output_size is not None else [0, 0]
    values["cameras"] = None if config.cameras == ("",) else list(config.cameras)
    return values


def update_config(config: NodeConfig, changes: Mapping[str, Any], *, unconfigured: bool = False,
                  managed: bool = False) -> NodeConfig:
    """A new config with ``changes`` applied: only :data:`DYNAMIC` parameters, or any while a managed node is
    ``unconfigured`` (start-up parameters take effect at the next configure).

    Raises:
        ConfigError: a start-up parameter outside that window, or an invalid value (the message says which and why).
    """
    fixed = sorted(name for name in changes if name not in DYNAMIC)
    if fixed and not unconfigured:
        how = "cleanup the managed node first: they can change while it is unconfigured" if managed else \
            "restart the node"
        raise ConfigError(
            f"parameter(s) {', '.join(fixed)} cannot change at run time ({how}); "
            f"changeable: {', '.join(sorted(DYNAMIC))}"
        )
    if fixed:
        values = config_to_values(config)
        values.update(changes)
        return config_from_values(values)
    values = config_to_values(config)
    values.update(changes)
    return replace(config, **{name: getattr(_build(values), name) for name in changes})


def resolve_score(config: NodeConfig, scores: Sequence[str]) -> str:
    """The score to publish: ``config.score`` if the model exports it, the model's first score when empty.

    Raises:
        ConfigError: the model does not export ``config.score`` (lists the exported ones).
    """
    if not scores:
        raise ConfigError("the model exports no anomaly score (ModelMeta.scores is empty)")
    if config.score == "":
        return scores[0]
    if config.score not in scores:
        raise _fail("score", config.score, f"a score the model exports: {', '.join(scores)}")
    return config.score


def resolve_mask_score(config: NodeConfig, score: str, scores: Sequence[str]) -> str:
    """The score ~/anomaly/mask thresholds: ``score``, or its road-gated ``<score>_road`` output (``roi``).

    Raises:
        ConfigError: ``roi: road`` but the model has no ``<score>_road`` output.
    """
    gated = f"{score}_road"
    if config.roi == "image" or score.endswith("_road"):
        return score
    if gated in scores:
        return gated
    if config.roi == "road":
        raise _fail("roi", "road", f"image or auto: the model has no '{gated}' output (export it with --road-gate)")
    return score


def operating_threshold(config: NodeConfig, score: str, extra: Mapping[str, Any] | None) -> tuple[float, str]:
    """The mask threshold in effect for ``score`` and where it comes from.

    Returns:
        ``(threshold, source)``: the ``threshold`` parameter when set (source ``"parameter"``), else the model's
        ``extra["thresholds"][score]`` (``"model"``), else 0.0 (``"fallback"``). Raw-score units.
    """
    if config.threshold is not None:
        return config.threshold, "parameter"
    table = (extra or {}).get("thresholds")
    value = table.get(score) if isinstance(table, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value), "model"
    return 0.0, "fallback"


def operating_range(config: NodeConfig, score: str, extra: Mapping[str, Any] | None) -> tuple[
        tuple[float, float] | None, str]:
    """The overlay display range ``(lo, hi)`` in raw-score units for ``score`` and its source.

    ``score_range`` when set (``"parameter"``), else the model's ``extra["score_ranges"][score]`` (``"model"``),
    else None = per-frame percentiles (``"automatic"``).
    """
    if config.score_range is not None:
        return config.score_range, "parameter"
    value_range = display_range(score, extra, None)
    return value_range, ("model" if value_range is not None else "automatic")


def plain_value(value: Any) -> Any:
    """ROS parameter values (``array.array`` for numeric arrays) -> plain Python lists."""
    return list(value) if hasattr(value, "typecode") else value
