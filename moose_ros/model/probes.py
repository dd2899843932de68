"""The MOoSe probe head: a small segmentation head trained on one spatial-pyramid branch of a frozen network.

A probe reads ``[N, C_in, h, w]`` features (already detached by the caller's model) and returns
``[N, num_classes, h, w]`` logits at the same resolution. Layout::

    1x1 conv (C_in -> width, no bias) + BN + ReLU                  "project"
    Dropout(p)                                                     "dropout" (training only; p = 0 disables)
    depth x [3x3 conv (width -> width, no bias) + BN + ReLU]       "blocks"  (each block its own weights)
    1x1 conv (width -> num_classes, with bias)                     "classifier"

``depth = 0`` leaves only the 1x1 projection and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Probe"]


class Probe(nn.Module):
    """One contextual head ``h_{c_k}`` of MOoSe.

    Args:
        in_channels: channels of the branch features the probe reads.
        num_classes: number of output classes C.
        width: channels of the hidden layers (``probe_width``).
        depth: number of 3x3 conv + BN + ReLU blocks after the projection (``probe_depth``, >= 0). Every block
            is a distinct module with its own parameters (no weight sharing across depth).
        dropout: probability of the element-wise dropout after the projection (``probe_dropout``,
            [0, 1)); it regularises each probe so that no single head becomes an over-confident detector. No
            parameters: checkpoints load with any value.
    """

    def __init__(
        self, in_channels: int, num_classes: int, *, width: int = 256, depth: int = 1, dropout: float = 0.5
    ) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(p=dropout)
        self.blocks = nn.Sequential(*(self._block(width) for _ in range(depth)))
        self.classifier = nn.Conv2d(width, num_classes, kernel_size=1)

    @staticmethod
    def _block(width: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(width, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )

    @property
    def depth(self) -> int:
        """Number of 3x3 blocks."""
        return len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features float [N, C_in, h, w] to logits float [N, num_classes, h, w]."""
        return self.classifier(self.blocks(self.dropout(self.project(x))))
