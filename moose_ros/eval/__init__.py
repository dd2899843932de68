"""Offline evaluation: run a score function over a dataset, measure, and write reports (numpy + matplotlib).

- :func:`evaluate_ood` (:mod:`.core`): ``score_fn(image) -> {"<method>/<score>": map}`` over an anomaly dataset
  -> :class:`OodEvaluation` (pixel metrics, SMIYC components, curves, gallery).
- :func:`write_report` (:mod:`.report`): ``report.md``, ``report.json``, ``pr_curves.png``, ``gallery/NNN.png``;
  shared with the rosbag evaluation.
- :mod:`.scorers`: score functions for a torch checkpoint (Global and MOoSe from one forward pass) or ONNX files.
"""

from __future__ import annotations

from moose_ros.eval.core import GalleryItem, OodEvaluation, ScoreFn, evaluate_ood, gallery_indices, split_key
from moose_ros.eval.report import jsonable, write_report

__all__ = [
    "GalleryItem",
    "OodEvaluation",
    "ScoreFn",
    "evaluate_ood",
    "gallery_indices",
    "jsonable",
    "split_key",
    "write_report",
]
