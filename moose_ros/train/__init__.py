"""Offline training of MOoSe networks (torch): the segmentation network, its probes, and the fair refit baseline.

- :mod:`~moose_ros.train.config`: YAML recipes (:class:`TrainConfig`, one :class:`StageConfig` per stage).
- :mod:`~moose_ros.train.trainer`: :func:`train_stage` for ``base`` | ``probes`` | ``refit`` (single process or
  torchrun/DDP, AMP on CUDA, resumable).
- :mod:`~moose_ros.train.validate`: per-head validation mIoU.
- :mod:`~moose_ros.train.ood_table`: the OoD table (Global, Global-refit, best probe, MOoSe) of trained runs.

Nothing here is imported by the node or the export path.
"""

from __future__ import annotations

from moose_ros.train.config import STAGES, StageConfig, TrainConfig, load_config
from moose_ros.train.trainer import StageResult, train_stage

__all__ = ["STAGES", "StageConfig", "StageResult", "TrainConfig", "load_config", "train_stage"]
