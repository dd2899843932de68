"""Common behaviour of every MOoSe network: the output contract, probe/trunk split and trunk freezing.

A MOoSe network is a segmentation network (the *trunk*: backbone, spatial pyramid, global head, decoder) plus
K probes, one per spatial-pyramid branch. Subclasses implement :meth:`MooseSegmentationModel.trunk_forward`,
which returns the global logits and the K probe inputs; this class detaches the probe inputs (gradients stop
at the probe input) and runs the probes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from moose_ros.errors import ConfigError

__all__ = ["PROBES_ATTR", "MooseSegmentationModel"]

#: Name of the attribute (and state_dict prefix) holding the probes; everything else is the trunk.
PROBES_ATTR = "probes"


class MooseSegmentationModel(nn.Module):
    """Base class: ``forward(x) -> {"out": logits, "probes": [K logits]}``.

    Subclasses assign their trunk submodules and ``self.probes`` (an :class:`~torch.nn.ModuleList` of
    :class:`~moose_ros.model.probes.Probe`) in ``__init__``. Builders set :attr:`architecture` and
    :attr:`model_kwargs` (the JSON-ready builder arguments that rebuild the same network).

    Trunk freezing (:meth:`train_probes_only`): every trunk parameter gets ``requires_grad = False`` and the
    trunk stays in eval mode whatever ``train()`` is called with, so its BatchNorm statistics never move and its
    dropout stays off. Only the probes follow ``train()``/``eval()``.
    """

    probes: nn.ModuleList

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self._num_classes = int(num_classes)
        self.architecture: str = type(self).__name__
        self.model_kwargs: dict[str, Any] = {}
        self._trunk_frozen = False

    # ----------------------------------------------------------------- contract
    def trunk_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the trunk on ``x`` float [N, 3, H, W].

        Returns:
            The global logits float [N, C, h, w] at feature resolution and the K probe inputs
            (float [N, C_k, h, w], not yet detached), in probe order.
        """
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """Segment a normalised batch.

        Args:
            x: float [N, 3, H, W], normalised with the checkpoint's mean/std.

        Returns:
            ``{"out": float [N, C, h, w], "probes": [K x float [N, C, h, w]]}`` at feature resolution
            (h, w = H/OS, W/OS rounded up as the convolutions do; for DeepLabV3+ the decoder's resolution).
            Nothing is upsampled or aggregated here. Probe gradients never reach the trunk.
        """
        out, probe_inputs = self.trunk_forward(x)
        return {"out": out, "probes": self.run_probes(probe_inputs)}

    def run_probes(self, probe_inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Apply probe k to ``probe_inputs[k]`` (detached first) and return the K logits [N, C, h, w].

        With :meth:`probe_inputs` this lets a trainer cache the frozen trunk's features once and train the
        probes on the cache.
        """
        if len(probe_inputs) != len(self.probes):
            raise ConfigError(
                f"{self.architecture}: {len(probe_inputs)} probe inputs given for {len(self.probes)} probes"
            )
        return [probe(feat.detach()) for probe, feat in zip(self.probes, probe_inputs, strict=True)]

    @torch.no_grad()
    def probe_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The K detached probe inputs for ``x`` float [N, 3, H, W] (no autograd graph; trunk mode as set)."""
        _, inputs = self.trunk_forward(x)
        return [feat.detach() for feat in inputs]

    # -------------------------------------------------------------- properties
    @property
    def num_probes(self) -> int:
        """K, the number of probe heads."""
        return len(self.probes)

    @property
    def num_classes(self) -> int:
        """C, the number of output classes."""
        return self._num_classes

    @property
    def trunk_frozen(self) -> bool:
        """True after :meth:`train_probes_only` (until :meth:`unfreeze_trunk`)."""
        return self._trunk_frozen

    # ----------------------------------------------------------- probe / trunk
    def trunk_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Yield ``(name, module)`` for every top-level submodule that is not the probes."""
        for name, module in self.named_children():
            if name != PROBES_ATTR:
                yield name, module

    def trunk_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the trunk (everything except the probes)."""
        for _, module in self.trunk_modules():
            yield from module.parameters()

    def probe_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the K probes."""
        yield from self.probes.parameters()

    def train_probes_only(self) -> MooseSegmentationModel:
        """Freeze the trunk: no trunk gradient, trunk always in eval mode. Returns ``self``."""
        for param in self.trunk_parameters():
            param.requires_grad_(False)
        self._trunk_frozen = True
        return self.train(self.training)

    def unfreeze_trunk(self) -> MooseSegmentationModel:
        """Undo :meth:`train_probes_only` (trunk trainable and following ``train()`` again). Returns ``self``."""
        for param in self.trunk_parameters():
            param.requires_grad_(True)
        self._trunk_frozen = False
        return self.train(self.training)

    def train(self, mode: bool = True) -> MooseSegmentationModel:
        """Set training mode; a frozen trunk stays in eval mode (see :meth:`train_probes_only`)."""
        super().train(mode)
        if self._trunk_frozen:
            for _, module in self.trunk_modules():
                module.eval()
        return self
