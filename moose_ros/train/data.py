"""Training data: seeded augmentation, tensor conversion and a sharded global-batch sampler.

Randomness is a pure function of ``(seed, epoch, sample index)`` so that a run gives the same batches and the
same augmented pixels whatever the number of ranks, accumulation steps or DataLoader workers, and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from moose_ros.errors import ConfigError, DatasetError

__all__ = [
    "IGNORE_INDEX",
    "AugmentConfig",
    "SegTrainSet",
    "ShardedBatchSampler",
    "augment",
    "resize_pair",
    "to_tensor",
]

IGNORE_INDEX = 255


@dataclass(frozen=True)
class AugmentConfig:
    """Per-sample augmentation: optional fixed resize, random scale, random crop (padded), random h-flip."""

    resize: tuple[int, int] | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    crop: tuple[int, int] | None = None
    flip: bool = False


def resize_pair(image: np.ndarray, label: np.ndarray | None, size_hw: tuple[int, int]) -> tuple[np.ndarray, Any]:
    """Resize image uint8 [H, W, 3] (bilinear) and label uint8 [H, W] (nearest) to ``size_hw`` = (H', W')."""
    h, w = int(size_hw[0]), int(size_hw[1])
    if image.shape[:2] == (h, w):
        return image, label
    out_img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    out_lbl = None if label is None else np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return out_img, out_lbl


def augment(
    image: np.ndarray, label: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``cfg`` to one sample; image uint8 [H, W, 3], label uint8 [H, W] (255 = ignore).

    Returns arrays of shape ``cfg.crop`` (or the scaled size without a crop). Padding uses 0 for the image and
    255 (ignored) for the label, so padded pixels never contribute to the loss.
    """
    if cfg.resize is not None:
        image, label = resize_pair(image, label, cfg.resize)
    lo, hi = cfg.scale
    if hi > lo or lo != 1.0:
        s = float(rng.uniform(lo, hi)) if hi > lo else lo
        h, w = label.shape
        image, label = resize_pair(image, label, (max(1, round(h * s)), max(1, round(w * s))))
    if cfg.crop is not None:
        ch, cw = cfg.crop
        h, w = label.shape
        if h < ch or w < cw:
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=0)
            label = np.pad(label, ((0, ph), (0, pw)), constant_values=IGNORE_INDEX)
            h, w = label.shape
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        image = image[top : top + ch, left : left + cw]
        label = label[top : top + ch, left : left + cw]
    if cfg.flip and rng.random() < 0.5:
        image = image[:, ::-1]
        label = label[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def to_tensor(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [H, W, 3] RGB -> float32 [3, H, W], scaled to [0, 1] then normalised per channel."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


class SegTrainSet(torch.utils.data.Dataset):
    """Wraps a ``SegSample`` sequence; item ``(epoch, index)`` -> (image float [3,H,W], label int64 [H,W]).

    The item key carries the epoch so augmentation randomness is ``f(seed, epoch, index)`` only.
    """

    def __init__(
        self,
        samples: Sequence[Any],
        aug: AugmentConfig,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        seed: int,
    ) -> None:
        if len(samples) == 0:
            raise DatasetError("training split is empty: no images to train on")
        self.samples = samples
        self.aug = aug
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        sample = self.samples[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        image, label = augment(np.asarray(sample.image), np.asarray(sample.label), self.aug, rng)
        return to_tensor(image, self.mean, self.std), torch.from_numpy(label.astype(np.int64))


class ShardedBatchSampler(torch.utils.data.Sampler):
    """Yields micro-batches of ``(epoch, index)`` keys for one rank, from ``start_step`` to ``total_steps``.

    Step ``s`` of the run takes global batch ``s mod steps_per_epoch`` of the permutation of epoch
    ``s // steps_per_epoch`` (``torch.randperm`` seeded with ``seed + epoch``; the last partial batch is dropped).
    The global batch is cut into ``world_size * accum`` equal shards; rank ``r`` gets shards
    ``a * world_size + r`` for ``a = 0 .. accum-1``, one micro-batch each, in that order. Hence a run with
    ``world_size=1, accum=2`` sees exactly the micro-batches of ``world_size=2, accum=1``.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        *,
        total_steps: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        accum: int = 1,
        start_step: int = 0,
    ) -> None:
        shards = world_size * accum
        if global_batch % shards != 0:
            raise ConfigError(
                f"batch_size={global_batch} is not divisible by world_size*accum={world_size}*{accum}"
            )
        if num_samples < global_batch:
            raise ConfigError(f"batch_size={global_batch} is larger than the training set ({num_samples} images)")
        self.n = num_samples
        self.batch = global_batch
        self.micro = global_batch // shards
        self.total_steps = total_steps
        self.seed = seed
        self.rank = rank
        self.world = world_size
        self.accum = accum
        self.start_step = start_step
        self.steps_per_epoch = num_samples // global_batch

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        perm: list[int] = []
        cached_epoch = -1
        for step in range(self.start_step, self.total_steps):
            epoch, pos = divmod(step, self.steps_per_epoch)
            if epoch != cached_epoch:
                g = torch.Generator().manual_seed(self.seed + epoch)
                perm = torch.randperm(self.n, generator=g).tolist()
                cached_epoch = epoch
            batch = perm[pos * self.batch : (pos + 1) * self.batch]
            for a in range(self.accum):
                j = a * self.world + self.rank
                yield [(epoch, i) for i in batch[j * self.micro : (j + 1) * self.micro]]
