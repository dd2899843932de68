"""Exact feature caching for the stages that train heads on a frozen trunk (``probes``, ``refit``).

The frozen trunk runs in eval mode, so its outputs for an image never change during those stages. The cache runs
it once per image (and once more per horizontally flipped copy when asked; a flipped image goes through the
trunk, the features are not flipped) and keeps, per image:

- the K probe inputs (what ``model.trunk_forward`` hands to the probes), float32 [C_k, h, w];
- the input of the refit head (captured with a forward pre-hook on its first layer), float32 [A, h, w];
- the label, uint8 [H, W].

Training the probes (or the refit head) on these tensors computes exactly what the full model computes on the
same images; only random scale/crop augmentation is given up. One cache (the last one built) is kept in memory
per process, so several seeds trained in one process share it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from moose_ros.train.data import resize_pair, to_tensor
from moose_ros.train.stages import refit_head

__all__ = ["CachedHeads", "FeatureCache", "cached_features"]

log = logging.getLogger(__name__)

_MEMO: dict[tuple, FeatureCache] = {}


class FeatureCache(torch.utils.data.Dataset):
    """Frozen-trunk features of a training split; item ``(epoch, index)`` -> (probe inputs, refit input, label).

    Items ``0 .. n-1`` are the images, ``n .. 2n-1`` (with ``flip``) their mirrored copies. The epoch in the
    key is ignored (no random augmentation is left).
    """

    def __init__(
        self,
        model: nn.Module,
        samples: Sequence[Any],
        *,
        mean: Sequence[float],
        std: Sequence[float],
        resize: tuple[int, int] | None = None,
        flip: bool = False,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        batch_size: int = 4,
        progress: bool = True,
    ) -> None:
        from tqdm import tqdm

        self.probe_inputs: list[list[torch.Tensor]] = []
        self.refit_inputs: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        captured: list[torch.Tensor] = []
        first = next(iter(refit_head(model).children()))
        hook = first.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
        was_training = model.training
        model.eval()
        views = [(i, False) for i in range(len(samples))] + ([(i, True) for i in range(len(samples))] if flip else [])
        t0 = time.monotonic()
        try:
            with torch.no_grad():
                for start in tqdm(range(0, len(views), batch_size), desc="cache", disable=not progress,
                                  dynamic_ncols=True):
                    chunk = views[start : start + batch_size]
                    images, labels = [], []
                    for index, mirrored in chunk:
                        sample = samples[index]
                        image, label = np.asarray(sample.image), np.asarray(sample.label)
                        if resize is not None:
                            image, label = resize_pair(image, label, resize)
                        if mirrored:
                            image, label = image[:, ::-1], label[:, ::-1]
                        images.append(to_tensor(np.ascontiguousarray(image), mean, std))
                        labels.append(torch.from_numpy(np.ascontiguousarray(label)))
                    if len({tuple(im.shape) for im in images}) > 1:  # mixed sizes: one by one
                        batches = [im[None] for im in images]
                    else:
                        batches = [torch.stack(images)]
                    row = 0
                    for x in batches:
                        x = x.to(device)
                        if channels_last:
                            x = x.contiguous(memory_format=torch.channels_last)
                        captured.clear()
                        _, feats = model.trunk_forward(x)
                        head_in = captured[-1]
                        for j in range(x.shape[0]):
                            self.probe_inputs.append([f[j].float().cpu().contiguous() for f in feats])
                            self.refit_inputs.append(head_in[j].float().cpu().contiguous())
                            self.labels.append(labels[row])
                            row += 1
        finally:
            hook.remove()
            model.train(was_training)
        self.seconds = time.monotonic() - t0
        mb = sum(t.numel() * 4 for p in self.probe_inputs for t in p) / 2**20
        log.info("cached frozen features of %d views in %.1f s (%.0f MiB)", len(self.labels), self.seconds, mb)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key: tuple[int, int]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        _, index = key
        return self.probe_inputs[index], self.refit_inputs[index], self.labels[index].long()


def cached_features(key: tuple, build: Any) -> FeatureCache:
    """The process-wide cache for ``key``, built with ``build()`` if it is not the one kept in memory."""
    if key not in _MEMO:
        _MEMO.clear()
        _MEMO[key] = build()
    return _MEMO[key]


def cache_key(init: Path | None, data_root: str, split: str, resize: Any, flip: bool) -> tuple:
    """Identity of a cache: the frozen network's file (path, size, mtime) and the data it was computed on."""
    stat = init.stat() if init is not None and init.is_file() else None
    file_id = (str(init), stat.st_size, stat.st_mtime_ns) if stat is not None else (str(init),)
    return (*file_id, str(Path(data_root).resolve()), split, tuple(resize) if resize else None, bool(flip))


class CachedHeads(nn.Module):
    """The trainable heads of a stage applied to cached features (what DDP wraps when caching).

    ``forward(probe_inputs, refit_input)`` returns ``{"probes": [K logits]}`` (stage probes) or
    ``{"out": logits}`` (stage refit), float [N, C, h, w] as the full model would.
    """

    def __init__(self, model: nn.Module, stage: str) -> None:
        super().__init__()
        self.stage = stage
        if stage == "probes":
            self.heads = model.probes
        else:
            self.heads = refit_head(model)

    def forward(self, probe_inputs: list[torch.Tensor], refit_input: torch.Tensor) -> dict[str, Any]:
        """Logits of the stage's heads from cached features."""
        if self.stage == "probes":
            return {"probes": [p(f) for p, f in zip(self.heads, probe_inputs, strict=True)]}
        return {"out": self.heads(refit_input)}
