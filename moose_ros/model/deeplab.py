"""MOoSe on DeepLabV3 and DeepLabV3+: one probe per non-pooling ASPP branch.

DeepLabV3 keeps torchvision's module tree (``backbone`` = ``IntermediateLayerGetter``, ``classifier`` =
``ASPP`` + 3x3 conv + BN + ReLU + 1x1 conv), so a torchvision ``DeepLabV3`` state_dict loads into the trunk
under the same names. The ASPP is run branch by branch (the same ops as ``ASPP.forward``) so the branch
outputs can feed the probes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from moose_ros.model.base import MooseSegmentationModel
from moose_ros.model.probes import Probe

__all__ = ["MooseDeepLabV3", "MooseDeepLabV3Plus", "deeplab_head"]


def deeplab_head(in_channels: int, num_classes: int, atrous_rates: Sequence[int], aspp_channels: int) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` layout with a configurable ASPP width.

    ``[0]`` ASPP(in_channels -> aspp_channels), ``[1]`` 3x3 conv, ``[2]`` BN, ``[3]`` ReLU, ``[4]`` 1x1 conv to
    ``num_classes``. With ``aspp_channels=256`` the parameter names and shapes equal torchvision's.
    """
    return nn.Sequential(
        ASPP(in_channels, list(atrous_rates), out_channels=aspp_channels),
        nn.Conv2d(aspp_channels, aspp_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(aspp_channels),
        nn.ReLU(),
        nn.Conv2d(aspp_channels, num_classes, 1),
    )


def _aspp_branches(aspp: ASPP, features: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``aspp`` like ``ASPP.forward`` and also return its branch outputs.

    Returns:
        The projected ASPP output float [N, A, h, w] and the branch outputs (1x1, atrous..., image pooling),
        each float [N, A, h, w] (the pooling branch already broadcast to h x w).
    """
    branches = [conv(features) for conv in aspp.convs]
    return aspp.project(torch.cat(branches, dim=1)), branches


def _aspp_channels(aspp: ASPP) -> int:
    return int(aspp.project[0].out_channels)


class MooseDeepLabV3(MooseSegmentationModel):
    """DeepLabV3 + MOoSe probes.

    Probe k (k < K = number of non-pooling ASPP branches = 1 + len(atrous_rates)) reads
    ``cat(branch_k, image_pooling)`` (2 x ``aspp_channels`` channels) at the backbone's feature resolution.

    Args:
        backbone: returns ``{"out": features}`` (an ``IntermediateLayerGetter`` as torchvision's).
        classifier: a :func:`deeplab_head`.
        num_classes: C.
        probe_width, probe_depth, probe_dropout: see :class:`~moose_ros.model.probes.Probe`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Sequential,
        *,
        num_classes: int,
        probe_width: int,
        probe_depth: int,
        probe_dropout: float = 0.5,
    ) -> None:
        super().__init__(num_classes)
        self.backbone = backbone
        self.classifier = classifier
        aspp: ASPP = classifier[0]
        width = _aspp_channels(aspp)
        num_probes = len(aspp.convs) - 1
        self.probes = nn.ModuleList(
            Probe(2 * width, num_classes, width=probe_width, depth=probe_depth, dropout=probe_dropout)
            for _ in range(num_probes)
        )

    def trunk_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Global logits [N, C, H/OS, W/OS] and K probe inputs [N, 2A, H/OS, W/OS]."""
        features = self.backbone(x)["out"]
        y, branches = _aspp_branches(self.classifier[0], features)
        for index in range(1, len(self.classifier)):
            y = self.classifier[index](y)
        pooled = branches[-1]
        return y, [torch.cat([branch, pooled], dim=1) for branch in branches[:-1]]


class MooseDeepLabV3Plus(MooseSegmentationModel):
    """DeepLabV3+ (ASPP + low-level decoder) + MOoSe probes, output at the low-level (stride 4) resolution.

    Trunk: ``backbone`` returns ``{"low_level": layer1, "out": layer4}``; ``aspp``; ``low_level_project``
    (1x1 conv to 48 channels + BN + ReLU); ``decoder`` (``decoder_convs`` x [3x3 conv + BN + ReLU] on
    ``cat(upsampled ASPP output, projected low-level)``, then a 1x1 conv to C). ``decoder_convs=2`` is this
    package's own decoder; ``decoder_convs=1`` is the decoder of VainF's DeepLabV3Plus-Pytorch and of the MOoSe
    authors' DeepLabV3+ release (``moose import`` reorders their input channels to this order).
    Probe k reads ``cat(upsample(cat(branch_k, image_pooling)), projected low-level)``
    (2 x ``aspp_channels`` + 48 channels) at the low-level resolution.

    Args:
        backbone: see above.
        low_level_channels: channels of the backbone's ``"low_level"`` output (256 for ResNet-50/101).
        aspp: a torchvision ``ASPP``.
        num_classes, probe_width, probe_depth, probe_dropout: as :class:`MooseDeepLabV3`.
        decoder_channels: width of the decoder's 3x3 convs.
        decoder_convs: number of 3x3 conv + BN + ReLU blocks in the decoder (>= 1).
        projected_channels: channels of the projected low-level features (48 as in the DeepLabV3+ paper).
    """

    def __init__(
        self,
        backbone: nn.Module,
        low_level_channels: int,
        aspp: ASPP,
        *,
        num_classes: int,
        probe_width: int,
        probe_depth: int,
        probe_dropout: float = 0.5,
        decoder_channels: int = 256,
        decoder_convs: int = 2,
        projected_channels: int = 48,
    ) -> None:
        super().__init__(num_classes)
        self.backbone = backbone
        self.aspp = aspp
        width = _aspp_channels(aspp)
        self.low_level_project = nn.Sequential(
            nn.Conv2d(low_level_channels, projected_channels, 1, bias=False),
            nn.BatchNorm2d(projected_channels),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        for index in range(decoder_convs):
            in_channels = width + projected_channels if index == 0 else decoder_channels
            blocks += [nn.Conv2d(in_channels, decoder_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(decoder_channels), nn.ReLU()]
        self.decoder = nn.Sequential(*blocks, nn.Conv2d(decoder_channels, num_classes, 1))
        num_probes = len(aspp.convs) - 1
        self.probes = nn.ModuleList(
            Probe(2 * width + projected_channels, num_classes, width=probe_width, depth=probe_depth,
                  dropout=probe_dropout)
            for _ in range(num_probes)
        )

    def trunk_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Global logits [N, C, h4, w4] and K probe inputs [N, 2A + 48, h4, w4] (h4, w4 = layer1's size)."""
        features = self.backbone(x)
        low = self.low_level_project(features["low_level"])
        size = low.shape[-2:]
        y, branches = _aspp_branches(self.aspp, features["out"])
        y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        out = self.decoder(torch.cat([y, low], dim=1))
        pooled = branches[-1]
        probe_inputs = []
        for branch in branches[:-1]:
            up = F.interpolate(torch.cat([branch, pooled], dim=1), size=size, mode="bilinear", align_corners=False)
            probe_inputs.append(torch.cat([up, low], dim=1))
        return out, probe_inputs
