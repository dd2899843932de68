"""The fused MOoSe graph and its ONNX export (torch needed; backends only read the exported file).

- :func:`postprocess` (:mod:`.postprocess`): heads' logits -> labels + every score at a given output size; the one
  post-processing, used by the fused graph and by offline evaluation.
- :class:`FusedMoose` / :class:`FusedEnsemble` (:mod:`.fused`): uint8 images in, labels + anomaly scores out.
- :func:`export_onnx` (:mod:`.onnx_export`): opset-17 ONNX with the :class:`~moose_ros.backends.base.ModelMeta`
  in its metadata, checked by ``onnx.checker`` and :func:`check_tensorrt_compatible` (:mod:`.trt_check`).
"""

from __future__ import annotations

from moose_ros.export.fused import FusedEnsemble, FusedMoose, output_names
from moose_ros.export.onnx_export import OPSET, build_model_meta, export_onnx, make_fused
from moose_ros.export.postprocess import BoundarySuppression, SmlStats, postprocess
from moose_ros.export.trt_check import TENSORRT_OPS, check_tensorrt_compatible, tensorrt_problems

__all__ = [
    "OPSET",
    "TENSORRT_OPS",
    "BoundarySuppression",
    "FusedEnsemble",
    "FusedMoose",
    "SmlStats",
    "build_model_meta",
    "check_tensorrt_compatible",
    "export_onnx",
    "make_fused",
    "output_names",
    "postprocess",
    "tensorrt_problems",
]
