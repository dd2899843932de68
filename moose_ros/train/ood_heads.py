"""The heads of every method of the OoD table, computed from ONE trunk pass per image, as a score function.

Methods (keys of :meth:`TableScorer.method_heads`):

- ``Global``: the base network's global head (M = 1);
- ``Global-refit#s``: the global head's last block re-initialised and trained with the probes' budget (seed s);
- ``Best probe#s``: the probe with the highest val mIoU of seed s (chosen on the val split, never on OoD data);
- ``MOoSe#s``: the global head + the K probes of seed s (MOoSe Eq. 3-6).

Every probe/refit checkpoint must share the base's frozen trunk (checked bit for bit). Scores are computed with the
fused graph's post-processing (:func:`moose_ros.eval.variants.variant_maps`: labels and scores at the network
input size) so a table cell is the number of a graph exported with that variant. ``sml`` variants use per-method
statistics measured on training images (:meth:`TableScorer.calibrate`), as ``moose calibrate`` does for a bundle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moose_ros.errors import CheckpointError, ConfigError

__all__ = ["METHODS", "TableScorer", "method_of", "seed_of"]

METHODS: tuple[str, ...] = ("Global", "Global-refit", "Best probe", "MOoSe")


def method_of(key: str) -> str:
    """``"MOoSe#1"`` -> ``"MOoSe"``."""
    return key.partition("#")[0]


def seed_of(key: str) -> int | None:
    """``"MOoSe#1"`` -> 1; ``"Global"`` -> None."""
    _, sep, seed = key.partition("#")
    return int(seed) if sep else None


def _trunk_state(model: torch.nn.Module, skip: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(skip)}


def _refit_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    from moose_ros.train.stages import refit_head

    head_ids = {id(p) for p in refit_head(model).parameters()}
    names = [n for n, p in model.named_parameters() if id(p) in head_ids]
    return tuple(sorted({n.rsplit(".", 1)[0] + "." for n in names}))


def _check_same_trunk(base: torch.nn.Module, other: torch.nn.Module, skip: tuple[str, ...], path: Path) -> None:
    a, b = _trunk_state(base, skip), _trunk_state(other, skip)
    differ = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    if differ:
        raise CheckpointError(f"{path}: its frozen network differs from the base checkpoint ({differ[:3]} ...); "
                              "it was not trained on this base")


class TableScorer:
    """Score function ``image -> {"<method key>/<variant>": float32 [H, W]}`` over all methods and seeds.

    Args:
        runs: directory with ``base.pt`` and ``seed<s>/probes.pt`` + ``seed<s>/refit.pt``.
        seeds: probe/refit seeds.
        variants: :class:`~moose_ros.eval.variants.ScoreVariant` s to compute for every method.
        road_classes: drivable class names or ids for ``+road`` variants.
        device: torch device.
    """

    def __init__(
        self,
        runs: Path,
        seeds: Sequence[int],
        variants: Sequence[Any],
        *,
        road_classes: Sequence[int | str] = ("road", "sidewalk"),
        device: str = "cpu",
    ) -> None:
        from moose_ros.export.onnx_export import class_ids
        from moose_ros.model import load_checkpoint
        from moose_ros.train.stages import refit_head

        self.device = torch.device(device)
        self.variants = tuple(variants)
        self.base, self.meta = load_checkpoint(runs / "base.pt", map_location=device)
        self.base.eval()
        self.road_classes = class_ids(road_classes, self.meta)
        skip_refit = _refit_prefixes(self.base)
        self.seeds = list(seeds)
        self.probes: dict[int, Any] = {}
        self.refit: dict[int, Any] = {}
        self.best: dict[int, int] = {}
        self.val: dict[int, Any] = {}
        for seed in self.seeds:
            probes_path, refit_path = runs / f"seed{seed}" / "probes.pt", runs / f"seed{seed}" / "refit.pt"
            probes_model, probes_meta = load_checkpoint(probes_path, map_location=device)
            refit_model, _ = load_checkpoint(refit_path, map_location=device)
            _check_same_trunk(self.base, probes_model, ("probes.",), probes_path)
            _check_same_trunk(self.base, refit_model, ("probes.", *skip_refit), refit_path)
            record = probes_meta.metrics.get("probes") or {}
            if record.get("best_probe") is None:
                raise CheckpointError(f"{probes_path}: no val record to choose the best probe from")
            self.val[seed] = record
            self.best[seed] = int(record["best_probe"])
            self.probes[seed] = probes_model.probes.eval()
            self.refit[seed] = refit_head(refit_model).eval()
        self.sml: dict[str, Any] = {}
        # the refit head's input is the global head's first block's input: captured during the trunk pass
        self._captured: list[torch.Tensor] = []
        next(iter(refit_head(self.base).children())).register_forward_pre_hook(
            lambda _m, args: self._captured.append(args[0]))

    @property
    def method_keys(self) -> list[str]:
        """``Global`` then, per method, one key per seed."""
        return ["Global", *(f"{m}#{s}" for m in METHODS[1:] for s in self.seeds)]

    @torch.no_grad()
    def method_heads(self, image: np.ndarray) -> tuple[dict[str, list[torch.Tensor]], tuple[int, int]]:
        """({method key: logits list float32 [1, C, h, w], global/refit/probe head first}, input (H, W))."""
        from moose_ros.train.data import to_tensor

        x = to_tensor(np.asarray(image), self.meta.mean, self.meta.std)[None].to(self.device)
        self._captured.clear()
        global_logits, feats = self.base.trunk_forward(x)
        refit_in = self._captured[-1]
        out: dict[str, list[torch.Tensor]] = {"Global": [global_logits.float()]}
        for seed in self.seeds:
            probes = [p(f).float() for p, f in zip(self.probes[seed], feats, strict=True)]
            out[f"Global-refit#{seed}"] = [self.refit[seed](refit_in).float()]
            out[f"Best probe#{seed}"] = [probes[self.best[seed]]]
            out[f"MOoSe#{seed}"] = [global_logits.float(), *probes]
        return {k: out[k] for k in self.method_keys}, (x.shape[2], x.shape[3])

    @torch.no_grad()
    def calibrate(self, samples: Sequence[Any], limit: int) -> dict[str, Any]:
        """Per-method SML statistics over the first ``limit`` training images (needed by ``sml`` variants).

        The aggregated logits are taken at their feature resolution, where the fused graph standardises them.
        """
        from moose_ros.calibrate import SmlAccumulator
        from moose_ros.export.postprocess import SmlStats

        n = min(limit, len(samples))
        if n < 1:
            raise ConfigError("OoD table: no training image to measure the SML statistics on")
        acc = {key: SmlAccumulator(len(self.meta.classes)) for key in self.method_keys}
        for index in range(n):
            heads, _ = self.method_heads(np.asarray(samples[index].image))
            for key, used in heads.items():
                acc[key].add_heads(used)
        num_classes = len(self.meta.classes)
        self.sml = {key: SmlStats.from_json(a.compute(), num_classes, source=f"sml {key}") for key, a in acc.items()}
        return {"images": n}

    @torch.no_grad()
    def maps(self, image: np.ndarray) -> dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """{method key: (labels uint8 [1, H, W], {variant: float32 [1, H, W]})} for one uint8 [H, W, 3] image."""
        from moose_ros.eval.variants import variant_maps

        if any(v.score == "sml" for v in self.variants) and not self.sml:
            raise ConfigError("OoD table: sml variants need TableScorer.calibrate() first")
        heads, hw = self.method_heads(image)
        size = tuple(np.asarray(image).shape[:2])
        return {key: variant_maps(used, size, self.variants, input_hw=hw, sml=self.sml.get(key),
                                  road_classes=self.road_classes) for key, used in heads.items()}

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """:data:`moose_ros.eval.ScoreFn`: every method key and variant for one uint8 [H, W, 3] image."""
        return {f"{key}/{name}": m[0].cpu().numpy()
                for key, (_, maps) in self.maps(image).items() for name, m in maps.items()}
