"""Torch-free batching of dataset samples: seeded shuffling, random crops and horizontal flips (numpy).

The trainer wraps readers in torch Datasets itself; this is the plain-numpy path (tests, quick scripts,
feature caching) with the same augmentation semantics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from moose_ros.data.common import IGNORE_INDEX, OodSample, SegSample
from moose_ros.errors import ConfigError

__all__ = ["iter_batches", "random_crop_flip"]


def random_crop_flip(image: np.ndarray, target: np.ndarray, rng: np.random.Generator, *,
                     crop: tuple[int, int] | None = None, flip: bool = True,
                     fill: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``image`` uint8 [H, W, 3] and ``target`` uint8 [H, W] to ``crop`` (h, w) at a random place and
    flip both left-right with probability 0.5. Smaller inputs are padded (image 0, target ``fill``)."""
    if crop is not None:
        ch, cw = crop
        if ch < 1 or cw < 1:
            raise ConfigError(f"crop size must be positive, got {crop}")
        h, w = target.shape
        if h < ch or w < cw:
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)))
            target = np.pad(target, ((0, ph), (0, pw)), constant_values=fill)
            h, w = target.shape
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        image, target = image[y : y + ch, x : x + cw], target[y : y + ch, x : x + cw]
    if flip and rng.random() < 0.5:
        image, target = image[:, ::-1], target[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(target)


def iter_batches(dataset: Sequence[SegSample | OodSample], batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 epochs: int | None = 1, crop: tuple[int, int] | None = None, flip: bool = False,
                 drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Yield ``(images uint8 [N, h, w, 3], targets uint8 [N, h, w], names)`` batches.

    ``targets`` are the samples' ``label`` (train ids) or ``ood`` masks. The order is a pure function of
    ``seed`` and the epoch; ``epochs=None`` repeats forever. Without ``crop`` all samples must share one size.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        return
    epoch = 0
    while epochs is None or epoch < epochs:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(dataset)) if shuffle else np.arange(len(dataset))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            images, targets, names = [], [], []
            for i in idx:
                sample = dataset[int(i)]
                image, target = random_crop_flip(sample[0], sample[1], rng, crop=crop, flip=flip)
                images.append(image)
                targets.append(target)
                names.append(sample[2])
            yield np.stack(images), np.stack(targets), names
        epoch += 1
