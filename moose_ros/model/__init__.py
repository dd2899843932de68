"""MOoSe model core (torch, torchvision): segmentation trunks with one probe head per spatial-pyramid branch.

- Builders (torchvision style, keyword-only): ``moose_deeplabv3_{resnet18,resnet50,resnet101,mobilenet_v3_large}``,
  ``moose_deeplabv3plus_{resnet50,resnet101}``, ``moose_pspnet_{resnet50,resnet101}``, and
  :func:`build_model` dispatching by name (:data:`ARCHITECTURES`).
- ``model(x)`` with x float [N, 3, H, W] (normalised) returns ``{"out": [N, C, h, w], "probes": [K x [N, C, h, w]]}``
  at feature resolution; nothing is upsampled or aggregated in the model.
- ``model.train_probes_only()``: the trunk gets no gradient and its BatchNorm statistics never move.
- Checkpoints carry a :class:`CheckpointMeta` and load with ``torch.load(weights_only=True)`` only;
  torchvision ``DeepLabV3`` state_dicts load into the trunk with :func:`load_torchvision_state_dict`.
"""

from __future__ import annotations

from moose_ros.model.base import MooseSegmentationModel
from moose_ros.model.builders import (
    ARCHITECTURES,
    build_model,
    default_model_kwargs,
    load_checkpoint,
    moose_deeplabv3_mobilenet_v3_large,
    moose_deeplabv3_resnet18,
    moose_deeplabv3_resnet50,
    moose_deeplabv3_resnet101,
    moose_deeplabv3plus_resnet50,
    moose_deeplabv3plus_resnet101,
    moose_pspnet_resnet50,
    moose_pspnet_resnet101,
)
from moose_ros.model.checkpoint import (
    CheckpointMeta,
    TorchvisionLoadReport,
    load_torchvision_state_dict,
    read_checkpoint,
    save_checkpoint,
)
from moose_ros.model.deeplab import MooseDeepLabV3, MooseDeepLabV3Plus
from moose_ros.model.probes import Probe
from moose_ros.model.pspnet import MoosePSPNet

__all__ = [
    "ARCHITECTURES",
    "CheckpointMeta",
    "MooseDeepLabV3",
    "MooseDeepLabV3Plus",
    "MoosePSPNet",
    "MooseSegmentationModel",
    "Probe",
    "TorchvisionLoadReport",
    "build_model",
    "default_model_kwargs",
    "load_checkpoint",
    "load_torchvision_state_dict",
    "moose_deeplabv3_mobilenet_v3_large",
    "moose_deeplabv3_resnet18",
    "moose_deeplabv3_resnet50",
    "moose_deeplabv3_resnet101",
    "moose_deeplabv3plus_resnet50",
    "moose_deeplabv3plus_resnet101",
    "moose_pspnet_resnet50",
    "moose_pspnet_resnet101",
    "read_checkpoint",
    "save_checkpoint",
]
