"""``export_onnx``: trace :class:`~moose_ros.export.fused.FusedMoose` to a self-describing ONNX file.

The legacy TorchScript exporter is used on purpose (``dynamo=False``, opset 17): the dynamo exporter, asked for
opset 17, silently writes opset 18, which older TensorRT parsers reject. The file carries a
:class:`~moose_ros.backends.base.ModelMeta` in the ONNX metadata (key ``moose_meta``), passes
``onnx.checker.check_model`` and the static TensorRT check of :mod:`moose_ros.export.trt_check`, and is written
atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import io
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from moose_ros.contract import META_KEY, ModelMeta
from moose_ros.errors import ConfigError, ExportError
from moose_ros.export.fused import FusedMoose
from moose_ros.export.postprocess import DEFAULT_RESOLUTION, BoundarySuppression, SmlStats
from moose_ros.export.trt_check import check_tensorrt_compatible
from moose_ros.outputs import atomic_write_bytes

__all__ = [
    "OPSET",
    "build_model_meta",
    "class_ids",
    "export_onnx",
    "is_fused_graph",
    "make_fused",
    "operating_point_extra",
    "sml_from_meta",
]

LOG = logging.getLogger(__name__)

OPSET = 17
#: Image size (H, W) the graph is traced at when no ``input_size`` fixes the network size; H, W stay dynamic.
TRACE_SIZE = (128, 160)


def _default_colors(count: int) -> tuple[tuple[int, int, int], ...]:
    """A deterministic, well-spread RGB palette for models without checkpoint colours."""
    return tuple(((37 * i + 80) % 256, (91 * i + 40) % 256, (151 * i + 160) % 256) for i in range(count))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def operating_point_extra(
    calibration: dict[str, Any], heads: str, scores: Sequence[str] | None = None, *, boundary: bool = False
) -> dict[str, Any]:
    """``{"thresholds": {score: t}, "score_ranges": {score: [lo, hi]}}`` from a checkpoint's calibration.

    ``calibration["operating_points"][heads]`` holds one entry per score variant (``sml``, ``sml+bs``,
    ``sml+bs+road``, ...) for the head set (``moose`` or ``global``). With ``scores`` (a graph's output score names,
    e.g. ``("sml", "sml_road")``) and its ``boundary`` flag, each name gets the point of its variant; without, every
    point is returned under its own name. The node reads these two maps of ``ModelMeta.extra`` when its
    ``threshold`` / ``score_range`` parameters are left unset; scores without an operating point are absent.
    """
    points = ((calibration or {}).get("operating_points") or {}).get(heads) or {}
    if scores is None:
        chosen = dict(points)
    else:
        chosen = {}
        for name in scores:
            base, gated = (name[: -len("_road")], True) if name.endswith("_road") else (name, False)
            variant = base + ("+bs" if boundary else "") + ("+road" if gated else "")
            if variant in points:
                chosen[name] = points[variant]
    thresholds = {k: float(v["threshold"]) for k, v in chosen.items() if "threshold" in v}
    ranges = {k: [float(x) for x in v["display_range"]] for k, v in chosen.items() if "display_range" in v}
    out: dict[str, Any] = {}
    if thresholds:
        out["thresholds"] = thresholds
    if ranges:
        out["score_ranges"] = ranges
    return out


def build_model_meta(fused: FusedMoose, checkpoint_meta: Any | None = None, *, extra: dict | None = None) -> ModelMeta:
    """The :class:`ModelMeta` describing ``fused`` (class names, colours, ignore index from ``checkpoint_meta``).

    Without a checkpoint meta the classes are named ``class_<i>`` and get a generated palette.
    """
    model = fused.model
    if checkpoint_meta is not None:
        classes = tuple(checkpoint_meta.classes)
        colors = tuple(tuple(int(v) for v in c) for c in checkpoint_meta.colors)
        architecture = str(checkpoint_meta.architecture)
        ignore_index = int(checkpoint_meta.ignore_index)
        info = {
            "model_kwargs": getattr(checkpoint_meta, "model_kwargs", {}),
            "probe_config": getattr(checkpoint_meta, "probe_config", {}),
            "recipe": getattr(checkpoint_meta, "recipe", {}),
            "metrics": getattr(checkpoint_meta, "metrics", {}),
            "train_input_size": getattr(checkpoint_meta, "input_size", None),
            "calibration": getattr(checkpoint_meta, "calibration", {}),
        }
    else:
        num_classes = getattr(model, "num_classes", None)
        if num_classes is None:
            raise ExportError(f"{type(model).__name__} has no num_classes; pass its checkpoint meta to the export")
        classes = tuple(f"class_{i}" for i in range(int(num_classes)))
        colors = _default_colors(len(classes))
        architecture = str(getattr(model, "architecture", type(model).__name__))
        ignore_index = 255
        info = {"model_kwargs": getattr(model, "model_kwargs", {})}
    info["heads"] = "ensemble" if type(fused).__name__ == "FusedEnsemble" else fused.heads_mode
    info["postprocess"] = getattr(fused, "postprocess_meta", {})
    info.update(operating_point_extra(info.get("calibration", {}), info["heads"], list(fused.scores),
                                      boundary=getattr(fused, "boundary", None) is not None))
    info.update(extra or {})
    return ModelMeta(
        architecture=architecture,
        classes=classes,
        colors=colors,
        ignore_index=ignore_index,
        mean=fused.mean,
        std=fused.std,
        scores=fused.scores,
        score_resolution=fused.score_resolution,
        input_size=fused.input_size,
        output_size=fused.output_size,
        num_probes=fused.num_probes,
        extra=_jsonable(info),
    )


def is_fused_graph(obj: Any) -> bool:
    """True for a :class:`FusedMoose` or a module with its interface (e.g. the class of an earlier revision, which
    ``moose bench infer`` exports as the baseline): ``model``, ``head_logits`` and ``output_names``."""
    if isinstance(obj, FusedMoose):
        return True
    return isinstance(obj, nn.Module) and all(hasattr(obj, a) for a in ("model", "head_logits", "output_names"))


def sml_from_meta(checkpoint_meta: Any | None, heads: str) -> SmlStats:
    """The SML statistics of head set ``heads`` (``"moose"`` / ``"global"``) from ``calibration["sml"]``.

    Raises:
        ConfigError: the checkpoint has none (run ``moose calibrate CKPT --data DIR``) or they do not fit.
    """
    entry = ((getattr(checkpoint_meta, "calibration", None) or {}).get("sml") or {}).get(heads)
    if entry is None:
        raise ConfigError(
            f"score 'sml' needs calibration['sml']['{heads}'] in the checkpoint meta: run `moose calibrate CKPT "
            "--data DIR` first"
        )
    return SmlStats.from_json(entry, len(checkpoint_meta.classes), source=f"calibration['sml']['{heads}']")


def class_ids(classes: Sequence[int | str], checkpoint_meta: Any | None) -> tuple[int, ...]:
    """Class ids from ids or names (names need the checkpoint's class list)."""
    names = list(getattr(checkpoint_meta, "classes", ()) or ())
    out = []
    for item in classes:
        if isinstance(item, int) or str(item).isdigit():
            out.append(int(item))
        elif item in names:
            out.append(names.index(item))
        else:
            raise ConfigError(f"road class {item!r} is neither a class id nor one of the classes {names}")
    return tuple(out)


def make_fused(
    checkpoint_or_model: str | os.PathLike[str] | nn.Module,
    *,
    scores: Sequence[str] = ("max_logit",),
    input_size: Sequence[int] | str | None = None,
    output_size: Sequence[int] | None = None,
    score_resolution: str = DEFAULT_RESOLUTION,
    heads: str = "moose",
    boundary: BoundarySuppression | None = None,
    road_classes: Sequence[int | str] | None = None,
) -> tuple[FusedMoose, Any | None]:
    """Load/wrap a model as a :class:`FusedMoose` in eval mode; returns ``(fused, checkpoint_meta or None)``.

    ``checkpoint_or_model``: a checkpoint path (``load_checkpoint``), a MOoSe network, or a ready
    :class:`FusedMoose` (returned as is, as is any :func:`is_fused_graph` module; the other options are then
    ignored). ``input_size="checkpoint"`` takes
    the checkpoint's training input size. ``road_classes`` may name classes (``"road"``) or give their ids.
    """
    if is_fused_graph(checkpoint_or_model):
        ckpt_meta = getattr(checkpoint_or_model.model, "checkpoint_meta", None)
        return checkpoint_or_model.eval(), ckpt_meta
    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model
        ckpt_meta = getattr(model, "checkpoint_meta", None)
    else:
        from moose_ros.model import load_checkpoint

        model, ckpt_meta = load_checkpoint(checkpoint_or_model, map_location="cpu")
    if isinstance(input_size, str):
        if input_size != "checkpoint":
            raise ConfigError(f"input_size must be (H, W), None or 'checkpoint', got {input_size!r}")
        input_size = getattr(ckpt_meta, "input_size", None)
        if input_size is None:
            raise ConfigError("input_size='checkpoint' but the checkpoint records no input_size")
    mean = tuple(ckpt_meta.mean) if ckpt_meta is not None else None
    std = tuple(ckpt_meta.std) if ckpt_meta is not None else None
    kwargs: dict[str, Any] = {"mean": mean, "std": std} if mean is not None else {}
    if "sml" in scores:
        kwargs["sml"] = sml_from_meta(ckpt_meta, heads)
    if road_classes is not None:
        kwargs["road_classes"] = class_ids(road_classes, ckpt_meta)
    fused = FusedMoose(
        model,
        scores=scores,
        input_size=input_size,
        output_size=output_size,
        score_resolution=score_resolution,
        heads=heads,
        boundary=boundary,
        **kwargs,
    )
    return fused.eval(), ckpt_meta


def _trace(fused: FusedMoose, meta: ModelMeta, *, dynamic_batch: bool, source: str) -> Any:
    """Trace ``fused`` to an ONNX ``ModelProto`` (opset 17, dynamic H/W and optionally N) carrying ``meta``."""
    import onnx

    trace_h, trace_w = fused.input_size if fused.input_size is not None else TRACE_SIZE
    # An input size different from the network size, so the resize is traced as a real op with dynamic H, W.
    dummy = torch.randint(0, 256, (1, trace_h + 7, trace_w + 9, 3), dtype=torch.uint8)
    names = fused.output_names
    dyn_in = {1: "H", 2: "W"}
    dyn_out = {} if fused.output_size is not None else {1: "H", 2: "W"}
    if dynamic_batch:
        dyn_in = {0: "N", **dyn_in}
        dyn_out = {0: "N", **dyn_out}
    dynamic_axes = {"image": dyn_in, **{name: dyn_out for name in names}}
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                fused,
                (dummy,),
                buffer,
                input_names=["image"],
                output_names=names,
                dynamic_axes=dynamic_axes,
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    except Exception as err:  # the exporter raises many unrelated types
        raise ExportError(f"{source}: tracing the fused graph failed: {err}") from err
    model = onnx.load_from_string(buffer.getvalue())
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, meta.to_json()
    model.producer_name = "moose_ros"
    model.doc_string = (
        "MOoSe fused graph: image uint8 [N,H,W,3] RGB -> labels uint8 [N,H',W'], anomaly float32 [N,H',W'] "
        f"(score {meta.scores[0]}, higher = anomalous)"
    )
    return model


def export_onnx(
    checkpoint_or_model: str | os.PathLike[str] | nn.Module,
    out_path: str | os.PathLike[str],
    *,
    scores: Sequence[str] = ("max_logit",),
    input_size: Sequence[int] | str | None = None,
    output_size: Sequence[int] | None = None,
    score_resolution: str = DEFAULT_RESOLUTION,
    dynamic_batch: bool = True,
    heads: str = "moose",
    check_tensorrt: bool = True,
    verify: bool = True,
    extra_meta: dict | None = None,
    boundary: BoundarySuppression | None = None,
    road_classes: Sequence[int | str] | None = None,
) -> ModelMeta:
    """Export the fused graph of a checkpoint or model to ``out_path`` (opset 17, dynamic N/H/W).

    Args:
        checkpoint_or_model: checkpoint path, MOoSe network or :class:`FusedMoose` (see :func:`make_fused`).
        out_path: the ``.onnx`` file to write (atomically).
        scores, input_size, output_size, score_resolution, heads: see :class:`FusedMoose`.
        dynamic_batch: N dynamic (else fixed to 1).
        check_tensorrt: run the static TensorRT-compatibility check (raise on any problem).
        verify: run the graph with ONNX Runtime (when installed) on a batch at a size other than the traced one and
            compare with the eager module (catches shapes frozen by tracing).
        extra_meta: merged into ``ModelMeta.extra``.
        boundary, road_classes: see :func:`make_fused` and :class:`FusedMoose`.

    Returns:
        The :class:`ModelMeta` stored in the file.

    Raises:
        ExportError: tracing failed, ``onnx.checker`` rejected the graph or a TensorRT problem was found (names the
            node and op).
    """
    import onnx

    out_path = Path(out_path)
    fused, ckpt_meta = make_fused(
        checkpoint_or_model,
        scores=scores,
        input_size=input_size,
        output_size=output_size,
        score_resolution=score_resolution,
        heads=heads,
        boundary=boundary,
        road_classes=road_classes,
    )
    fused = fused.float().cpu().eval()
    meta = build_model_meta(
        fused, ckpt_meta, extra={"exporter": f"torch {torch.__version__} legacy, opset {OPSET}", **(extra_meta or {})}
    )
    model = _trace(fused, meta, dynamic_batch=dynamic_batch, source=str(out_path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{out_path}: onnx.checker rejected the exported graph: {err}") from err
    _check_io(model, fused.output_names, source=str(out_path))
    if check_tensorrt:
        check_tensorrt_compatible(model, source=str(out_path))
    data = model.SerializeToString()
    if verify:
        _verify(fused, data, dynamic_batch=dynamic_batch, source=str(out_path))
    atomic_write_bytes(out_path, data)
    LOG.info(
        "exported %s: %s, scores %s (%s resolution), input %s, output %s, K=%d probes, %.1f MB",
        out_path,
        meta.architecture,
        ",".join(meta.scores),
        meta.score_resolution,
        meta.input_size or "native",
        meta.output_size or "= input",
        meta.num_probes,
        out_path.stat().st_size / 1e6,
    )
    return meta


def _check_io(model: Any, names: list[str], *, source: str) -> None:
    """The exported I/O must be the contract: image uint8, labels uint8, scores float32."""
    import onnx

    types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    expected = {"image": onnx.TensorProto.UINT8, "labels": onnx.TensorProto.UINT8}
    expected.update({name: onnx.TensorProto.FLOAT for name in names[1:]})
    got_outputs = [v.name for v in model.graph.output]
    if got_outputs != names:
        raise ExportError(f"{source}: graph outputs {got_outputs}, expected {names}")
    for name, elem in expected.items():
        if types.get(name) != elem:
            got = onnx.TensorProto.DataType.Name(types.get(name, 0))
            raise ExportError(f"{source}: '{name}' is {got}, expected {onnx.TensorProto.DataType.Name(elem)}")


def _verify(fused: FusedMoose, data: bytes, *, dynamic_batch: bool, source: str) -> None:
    """ONNX Runtime vs eager on uint8 images of a size that differs from the trace; ExportError on mismatch."""
    try:
        import onnxruntime
    except ImportError:
        LOG.info("%s: onnxruntime not installed, exported graph not verified numerically", source)
        return
    import numpy as np

    generator = torch.Generator().manual_seed(0)
    shape = (2 if dynamic_batch else 1, 97, 131, 3)
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": image.numpy()})
    except Exception as err:  # ORT raises its own Fail/RuntimeException types
        raise ExportError(
            f"{source}: ONNX Runtime cannot run the exported graph on {list(shape)} (a shape frozen by tracing?): {err}"
        ) from err
    with torch.no_grad():
        want = [t.numpy() for t in fused(image)]
    for name, a, b in zip(fused.output_names, got, want, strict=True):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ExportError(
                f"{source}: output '{name}' is {a.dtype}{list(a.shape)} in ONNX Runtime but "
                f"{b.dtype}{list(b.shape)} in torch (a shape frozen by tracing?)"
            )
        if name == "labels":
            agreement = float((a == b).mean())
            if agreement < 0.99:
                raise ExportError(f"{source}: labels agree with torch on only {agreement:.1%} of pixels")
        else:
            # Scores that depend on the arg-max class (SML's per-class statistics, boundary suppression's class
            # borders, the road gate's region) jump where a near-tie of two logits resolves differently in the two
            # runtimes, so, as for the labels, 99 % of the pixels (not every one) must agree within the tolerance;
            # a frozen shape or a wrong op breaks far more than that.
            tolerance = 1e-3 * float(np.ptp(b)) + 1e-4
            close = float((np.abs(a - b) <= tolerance).mean())
            if not close >= 0.99:
                error = float(np.quantile(np.abs(a - b), 0.99))
                raise ExportError(f"{source}: '{name}' differs from torch by {error:.3g} on 1 % of the pixels "
                                  f"(tolerance {tolerance:.3g}; {close:.2%} of the pixels agree)")
    LOG.debug("%s: verified against torch on %s", source, list(shape))
