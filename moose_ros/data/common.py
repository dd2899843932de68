"""Sample records, image/label file reading and the base class every dataset reader shares (numpy + Pillow).

Every reader is a :class:`collections.abc.Sequence` over a sorted, deterministic list of file pairs that is
checked when the reader is built: a wrong root or a missing file raises :class:`~moose_ros.errors.DatasetError`
naming the path and the layout that was expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple, overload

import numpy as np
from PIL import Image

from moose_ros.data.imageio import decode_image
from moose_ros.errors import DatasetError

__all__ = [
    "IGNORE_INDEX",
    "OOD_ANOMALY",
    "OOD_INLIER",
    "OOD_VOID",
    "OodSample",
    "PairDataset",
    "SegSample",
    "allowed_values",
    "check_label_values",
    "read_label",
    "read_rgb",
    "require_dir",
]

#: train id of pixels excluded from segmentation training and metrics
IGNORE_INDEX = 255
#: values of an :class:`OodSample` ``ood`` mask
OOD_INLIER = 0
OOD_ANOMALY = 1
OOD_VOID = 255


class SegSample(NamedTuple):
    """One segmentation sample.

    ``image``: uint8 [H, W, 3] RGB; ``label``: uint8 [H, W] train ids, 255 = ignore; ``name``: a stable id
    (the image path relative to the dataset root, without suffix).
    """

    image: np.ndarray
    label: np.ndarray
    name: str


class OodSample(NamedTuple):
    """One anomaly-segmentation sample.

    ``image``: uint8 [H, W, 3] RGB; ``ood``: uint8 [H, W] with 0 = in-distribution, 1 = anomaly, 255 = void
    (excluded from metrics); ``name``: a stable id (image path relative to the root, without suffix).
    """

    image: np.ndarray
    ood: np.ndarray
    name: str


def _rgb_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I"):
        arr = np.asarray(img, dtype=np.uint32) >> 8
        return np.repeat(arr.astype(np.uint8)[..., None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3] RGB (grey, palette, RGBA and 16-bit inputs are converted).

    Raises:
        DatasetError: missing, corrupt or oversized file (see :func:`moose_ros.data.imageio.decode_image`).
    """
    return decode_image(path, _rgb_array, what="image")


def _label_array(img: Image.Image, path: Path) -> np.ndarray:
    if img.mode in ("L", "P"):
        return np.asarray(img, dtype=np.uint8).copy()
    if img.mode in ("I;16", "I;16B", "I"):
        wide = np.asarray(img, dtype=np.int64)
        if wide.max(initial=0) > 255 or wide.min(initial=0) < 0:
            raise DatasetError(f"label file {path} holds values outside 0..255 (min {wide.min()}, max {wide.max()})")
        return wide.astype(np.uint8)
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img, dtype=np.uint8)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise DatasetError(f"label file {path} is colour RGB; expected single-channel ids")
        return rgb[..., 0].copy()
    raise DatasetError(f"label file {path} has image mode {img.mode!r}; expected L, P or I;16")


def read_label(path: Path) -> np.ndarray:
    """Read a single-channel label PNG as uint8 [H, W] raw values (palette indices kept as indices).

    Raises:
        DatasetError: missing, corrupt or oversized file, colour labels, or values above 255.
    """
    return decode_image(path, lambda img: _label_array(img, path), what="label")


def allowed_values(values: Iterable[int]) -> np.ndarray:
    """A read-only bool [256] table, True at each raw label value in ``values``."""
    table = np.zeros(256, dtype=bool)
    table[list(values)] = True
    table.setflags(write=False)
    return table


def check_label_values(raw: np.ndarray, allowed: np.ndarray, path: Path, layout: str, meaning: str) -> None:
    """Raise :class:`DatasetError` when ``raw`` (uint8 [H, W]) holds a value outside ``allowed`` (bool [256]).

    The message names the file, the layout and its documented set (``meaning``), and each value found outside
    it with its pixel count (at most 8 listed).
    """
    counts = np.bincount(raw.ravel(), minlength=256)
    bad = np.flatnonzero((counts > 0) & ~allowed)
    if bad.size:
        found = ", ".join(f"{v} ({counts[v]} px)" for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise DatasetError(f"label file {path} holds values outside the {layout} set ({meaning}): {found}")


def require_dir(path: Path, layout: str) -> Path:
    """Return ``path`` if it is a directory, else raise :class:`DatasetError` naming it and ``layout``."""
    if not path.is_dir():
        raise DatasetError(f"dataset directory not found: {path}; expected layout {layout}")
    return path


def check_pairs(pairs: Sequence[tuple[Path, Path]], layout: str) -> None:
    """Raise :class:`DatasetError` for the first image or label of ``pairs`` that is not a file."""
    for image, label in pairs:
        for path, what in ((image, "image"), (label, "label")):
            if not path.is_file():
                raise DatasetError(f"{what} file missing: {path}; expected layout {layout}")


def check_shapes(image: np.ndarray, label: np.ndarray, name: str) -> None:
    """Raise :class:`DatasetError` when an image [H, W, 3] and its label [H, W] differ in size."""
    if image.shape[:2] != label.shape:
        raise DatasetError(f"sample {name}: image is {image.shape[1]}x{image.shape[0]} but its label is "
                           f"{label.shape[1]}x{label.shape[0]} (W x H)")


class PairDataset(Sequence):
    """A sorted list of (image path, label path, name) triples read on indexing.

    Subclasses fill ``self._items`` in ``__init__`` and implement :meth:`_decode`, which turns the raw label
    values of one file into a :class:`SegSample` or :class:`OodSample`.
    """

    root: Path
    split: str | None
    _items: list[tuple[Path, Path, str]]
    #: bool [256]: the raw label values the layout documents (None = any value has a documented meaning)
    label_values: np.ndarray | None = None
    #: the layout's name and its label set in words, for the message when a file breaks it
    label_layout: str = ""
    label_meaning: str = ""

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> SegSample | OodSample: ...

    @overload
    def __getitem__(self, index: slice) -> list[SegSample | OodSample]: ...

    def __getitem__(self, index: int | slice) -> SegSample | OodSample | list[SegSample | OodSample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        n = len(self._items)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {n}")
        image_path, label_path, name = self._items[index]
        image = read_rgb(image_path)
        raw = read_label(label_path)
        if self.label_values is not None:
            check_label_values(raw, self.label_values, label_path, self.label_layout, self.label_meaning)
        check_shapes(image, raw, name)
        return self._decode(image, raw, name)

    def __iter__(self) -> Iterator[SegSample | OodSample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def names(self) -> list[str]:
        """Sample names in reading order."""
        return [name for _, _, name in self._items]

    @property
    def files(self) -> list[tuple[Path, Path]]:
        """(image path, label path) pairs in reading order."""
        return [(img, lbl) for img, lbl, _ in self._items]

    def _decode(self, image: np.ndarray, raw: np.ndarray, name: str) -> SegSample | OodSample:
        raise NotImplementedError

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split is not None else ""
        return f"{type(self).__name__}(root={str(self.root)!r}{split}, n={len(self)})"


def check_target(target: str, split: str) -> str:
    """Resolve a reader's ``target`` ("auto", "segmentation", "ood"): "auto" is "ood" for ``test``."""
    if target == "auto":
        return "ood" if split == "test" else "segmentation"
    if target not in ("segmentation", "ood"):
        raise DatasetError(f"target {target!r} unknown; choose auto, segmentation or ood")
    return target


def lut_from_pairs(pairs: dict[int, int], default: int) -> np.ndarray:
    """A uint8 lookup table [256] mapping raw label values to new values (``default`` elsewhere)."""
    lut = np.full(256, default, dtype=np.uint8)
    for src, dst in pairs.items():
        if src >= 0:
            lut[src] = dst
    return lut
