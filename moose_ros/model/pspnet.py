"""MOoSe on PSPNet: one probe per pyramid-pooling scale.

Trunk: ``backbone`` (dilated ResNet, ``{"out": features}``), ``pyramid`` (one branch per pool scale:
adaptive average pooling to s x s (written as matrix products so it exports to ONNX with dynamic sizes),
1x1 conv + BN + ReLU, bilinear upsampling back to the feature size) and ``classifier`` (3x3 conv + BN + ReLU
+ dropout 0.1 + 1x1 conv on ``cat(features, levels...)``).
Probe k reads ``cat(level_k, features)`` at the feature resolution.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from moose_ros.model.base import MooseSegmentationModel
from moose_ros.model.probes import Probe

__all__ = ["AdaptiveAvgPool2dMatmul", "MoosePSPNet", "PyramidPooling"]


def _bin_matrix(length: int | torch.Tensor, bins: int, like: torch.Tensor) -> torch.Tensor:
    """Averaging matrix float [bins, length]: row i averages [floor(i L / b), ceil((i + 1) L / b)).

    The bins are those of ``adaptive_avg_pool2d``; ``length`` may be a traced size (ONNX: Range + compares).
    """
    index = torch.arange(length, device=like.device)
    bin_ids = torch.arange(bins, device=like.device)
    start = torch.div(bin_ids * length, bins, rounding_mode="floor")
    end = torch.div((bin_ids + 1) * length + bins - 1, bins, rounding_mode="floor")
    mask = (index[None, :] >= start[:, None]) & (index[None, :] < end[:, None])
    weights = mask.to(like.dtype)
    return weights / weights.sum(dim=1, keepdim=True)


class AdaptiveAvgPool2dMatmul(nn.Module):
    """``nn.AdaptiveAvgPool2d(size)`` written as two matrix products so it exports to ONNX with dynamic H, W.

    The legacy ONNX exporter cannot export ``adaptive_avg_pool2d`` to sizes > 1 when the input size is dynamic;
    this module gives the same bins (equal up to float rounding) and runs the same way eagerly and in ONNX.
    Input float [N, C, h, w], output float [N, C, size, size].
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 1:
            return x.mean(dim=(2, 3), keepdim=True)
        rows = _bin_matrix(x.shape[-2], self.size, x)  # [s, h]
        cols = _bin_matrix(x.shape[-1], self.size, x)  # [s, w]
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))

    def extra_repr(self) -> str:
        return f"size={self.size}"


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module without the final concatenation.

    Args:
        in_channels: channels of the backbone features.
        pool_scales: output sizes s of the adaptive average pools (e.g. 1, 2, 3, 6).
        out_channels: channels of every pyramid level.
    """

    def __init__(self, in_channels: int, pool_scales: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(
                AdaptiveAvgPool2dMatmul(int(scale)),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )
            for scale in pool_scales
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Map float [N, C_in, h, w] to one float [N, out_channels, h, w] level per scale (upsampled)."""
        size = x.shape[-2:]
        return [F.interpolate(stage(x), size=size, mode="bilinear", align_corners=False) for stage in self.stages]


class MoosePSPNet(MooseSegmentationModel):
    """PSPNet + MOoSe probes (K = number of pool scales).

    Args:
        backbone: returns ``{"out": features}`` with ``in_channels`` channels.
        in_channels: backbone output channels (2048 for ResNet-50/101).
        pool_scales: pyramid scales.
        pyramid_channels: channels per pyramid level (512 for 2048 / 4 scales).
        num_classes, probe_width, probe_depth, probe_dropout: see :class:`~moose_ros.model.probes.Probe`.
        bottleneck_channels: width of the classifier's 3x3 conv.
    """

    def __init__(
        self,
        backbone: nn.Module,
        in_channels: int,
        pool_scales: Sequence[int],
        pyramid_channels: int,
        *,
        num_classes: int,
        probe_width: int,
        probe_depth: int,
        probe_dropout: float = 0.5,
        bottleneck_channels: int = 512,
    ) -> None:
        super().__init__(num_classes)
        self.backbone = backbone
        self.pyramid = PyramidPooling(in_channels, pool_scales, pyramid_channels)
        concat = in_channels + len(pool_scales) * pyramid_channels
        self.classifier = nn.Sequential(
            nn.Conv2d(concat, bottleneck_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(bottleneck_channels),
            nn.ReLU(),
            nn.Dropout2d(0.1),
            nn.Conv2d(bottleneck_channels, num_classes, 1),
        )
        self.probes = nn.ModuleList(
            Probe(in_channels + pyramid_channels, num_classes, width=probe_width, depth=probe_depth,
                  dropout=probe_dropout)
            for _ in pool_scales
        )

    def trunk_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Global logits [N, C, H/OS, W/OS] and K probe inputs [N, C_in + P, H/OS, W/OS]."""
        features = self.backbone(x)["out"]
        levels = self.pyramid(features)
        out = self.classifier(torch.cat([features, *levels], dim=1))
        return out, [torch.cat([level, features], dim=1) for level in levels]
