"""int8 CPU graphs: ONNX Runtime static QDQ quantisation of the network part of a fused graph.

:func:`quantize_int8` reads an exported fused graph (``moose export``), calibrates activation ranges on
in-distribution images fed through the graph's own uint8 input, and writes a copy in which every convolution of
the network (trunk, ASPP, global head and probes: the nodes traced under ``/model/`` or an ensemble's
``/members.``) runs in int8 (QuantizeLinear / DequantizeLinear pairs around it, weights per output channel).
Pre-processing and the post-processing (arg-max, scores, boundary suppression's smoothing convolution) stay in
float32, so labels and scores keep their meaning; only the network's numbers move. The model meta is copied and
records the quantisation (``extra["int8"]``).

Whether it pays depends on the CPU: int8 convolutions are fast where the CPU has VNNI / AMX-int8 instructions;
``moose bench int8`` measures speed and the change of mIoU and AUPR on the machine at hand.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.contract import META_KEY, ModelMeta
from moose_ros.errors import ConfigError, ExportError

__all__ = ["NETWORK_SCOPES", "network_convs", "quantize_int8"]

#: Node-name prefixes of the network in a traced fused graph (MOoSe model / ensemble members).
NETWORK_SCOPES = ("/model/", "/members.")


def network_convs(model: Any, *, skip_outputs: int | None = None) -> list[str]:
    """Names of the Conv nodes of the network in an ``onnx.ModelProto`` (not the post-processing's).

    ``skip_outputs``: leave out convolutions with this many output channels (the logit layers: C classes).
    """
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv" or not node.name.startswith(NETWORK_SCOPES):
            continue
        shape = weights.get(node.input[1])
        if skip_outputs is not None and shape is not None and shape[0] == skip_outputs:
            continue
        names.append(node.name)
    return names


class _ImageReader:
    """ONNX Runtime ``CalibrationDataReader``: one ``{"image": uint8 [1, H, W, 3]}`` feed per image."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self._images = images
        self._iter: Iterator[np.ndarray] = iter(images)

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._iter, None)
        return None if image is None else {"image": np.ascontiguousarray(image, dtype=np.uint8)[None]}

    def rewind(self) -> None:
        self._iter = iter(self._images)


def quantize_int8(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    images: Sequence[np.ndarray],
    *,
    per_channel: bool = True,
    calibration: str = "percentile",
    logits_fp32: bool = True,
) -> ModelMeta:
    """Write ``output``: ``source`` with the network's convolutions quantised to int8 (QDQ, static ranges).

    Args:
        source: fused fp32 ONNX graph (``moose export``).
        output: the int8 graph (written to a temporary name in the same folder, then renamed).
        images: calibration images, uint8 [H, W, 3] RGB, in-distribution (e.g. SynthStreet train scenes).
        per_channel: one weight scale per output channel (default) or per tensor.
        calibration: activation range method, ``"percentile"`` (99.999th; the default: it kept the scores'
            AUPR closer to fp32 than min-max on SynthStreet) or ``"minmax"``.
        logits_fp32: keep the heads' last convolutions (C output channels: the logits every score reads) in
            float32; the rest of the network runs in int8.

    Returns:
        The written graph's :class:`ModelMeta` (``extra["int8"]`` records the calibration).

    Raises:
        ConfigError: no calibration image, an unknown ``calibration``, or a graph without network convolutions.
        ExportError: ONNX Runtime's quantiser failed.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    if calibration not in methods:
        raise ConfigError(f"int8 calibration '{calibration}' is unknown; allowed values: {', '.join(methods)}")
    if len(images) == 0:
        raise ConfigError("int8: no calibration images (give --calib DIR with in-distribution images)")
    model = onnx.load(os.fspath(source))
    props = {p.key: p.value for p in model.metadata_props}
    if META_KEY not in props:
        raise ConfigError(f"int8: {source} carries no moose_ros model meta; export it with `moose export`")
    meta = ModelMeta.from_json(props[META_KEY])
    convs = network_convs(model, skip_outputs=meta.num_classes if logits_fp32 else None)
    if not convs:
        raise ConfigError(f"int8: {source} has no network convolutions (nodes under {', '.join(NETWORK_SCOPES)})")
    target = Path(output)
    with tempfile.TemporaryDirectory(prefix="moose_int8_", dir=target.parent) as folder:
        staged = Path(folder) / "int8.onnx"
        root, level = logging.getLogger(), logging.getLogger().level
        root.setLevel(logging.ERROR)  # the quantiser's advice on pre-processing and on SE-block biases is noise here
        try:
            quantize_static(
                os.fspath(source), os.fspath(staged), _ImageReader(images), quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"], nodes_to_quantize=convs, per_channel=per_channel,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=methods[calibration],
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
            )
        except Exception as err:  # the quantiser raises bare Exceptions / RuntimeErrors of ONNX Runtime
            raise ExportError(f"int8: ONNX Runtime's quantisation of {source} failed: {err}") from err
        finally:
            root.setLevel(level)
        quantized = onnx.load(os.fspath(staged))
        meta.extra["int8"] = {"format": "QDQ", "convs": len(convs), "calibration": calibration,
                              "calib_images": len(images), "per_channel": per_channel,
                              "logits_fp32": logits_fp32}
        del quantized.metadata_props[:]
        for key, value in {**props, META_KEY: meta.to_json()}.items():
            quantized.metadata_props.add(key=key, value=value)
        partial = target.with_name(f".{target.name}.partial")
        onnx.save(quantized, os.fspath(partial))
        os.replace(partial, target)
    return meta
