"""Read camera frames and their anomaly ground truth back from a rosbag2 (mcap or sqlite3).

Frames are paired with ground truth by ``header.stamp`` (not by log time), so bags recorded elsewhere work as
long as the ground-truth message carries its image's stamp. Topics are found by name first (the defaults of
:class:`~moose_ros.bag.from_dataset.BagTopics`), then by message type.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.bag.from_dataset import FRAME_NAMES_KEY, BagTopics
from moose_ros.bag.messages import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    deserialize,
    header_stamp_ns,
    image_to_array,
    message_to_array,
)
from moose_ros.errors import DatasetError

__all__ = ["BagFrame", "BagInfo", "inspect_bag", "iter_frames"]


@dataclass(frozen=True)
class BagInfo:
    """The topics of a bag that matter for evaluation.

    Attributes:
        path: bag directory.
        image_topic, image_type: the camera topic and its type (Image or CompressedImage).
        ground_truth_topic: mono8 0/1/255 topic, or None when the bag has none.
        frames: number of image messages.
        frames_with_ground_truth: number of ground-truth messages.
        names: frame names in stamp order from the bag's custom_data (empty when absent).
        duration_ns: bag duration (last minus first log time).
    """

    path: Path
    image_topic: str
    image_type: str
    ground_truth_topic: str | None
    frames: int
    frames_with_ground_truth: int
    names: tuple[str, ...]
    duration_ns: int


@dataclass
class BagFrame:
    """One camera frame from a bag.

    Attributes:
        index: position among the image messages (0-based, stamp order of the bag).
        stamp_ns: ``header.stamp`` in nanoseconds.
        raw: the CDR payload of the image message (publishable as is).
        image: uint8 [H, W, 3] RGB, or None when read with ``decode_images=False``.
        ood: uint8 [H, W] 0/1/255 ground truth with the same stamp, or None.
        name: frame name from the bag metadata, else ``"frame_<index>"``.
    """

    index: int
    stamp_ns: int
    raw: bytes
    image: np.ndarray | None
    ood: np.ndarray | None
    name: str


def _open(path: Path) -> Any:
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.errors import ReaderError

    if not (path / "metadata.yaml").is_file():
        raise DatasetError(f"{path} is not a rosbag2 directory (no metadata.yaml)")
    reader = Reader(path)
    try:
        reader.open()
    except ReaderError as err:
        raise DatasetError(f"cannot open bag {path}: {err}") from err
    return reader


def _pick_topics(
    reader: Any, path: Path, image_topic: str | None, gt_topic: str | None
) -> tuple[Any, Any | None]:
    """(image connection, ground-truth connection or None) for explicit names, defaults, or by type."""
    conns = {c.topic: c for c in reader.connections}
    defaults = BagTopics()
    if image_topic is not None:
        if image_topic not in conns:
            raise DatasetError(f"bag {path} has no topic '{image_topic}'; topics: {sorted(conns)}")
        image_conn = conns[image_topic]
    else:
        by_type = sorted(t for t, c in conns.items() if c.msgtype in (IMAGE_TYPE, COMPRESSED_TYPE))
        candidates = [defaults.image, defaults.compressed, *(t for t in by_type if t != defaults.ood_gt)]
        found = [t for t in candidates if t in conns and t != gt_topic]
        if not found:
            raise DatasetError(f"bag {path} has no camera image topic (Image/CompressedImage); topics: {sorted(conns)}")
        image_conn = conns[found[0]]
    if image_conn.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
        raise DatasetError(f"bag {path}: topic '{image_conn.topic}' is {image_conn.msgtype}, not an image type")
    if gt_topic is None:
        gt_topic = defaults.ood_gt if defaults.ood_gt in conns else None
    if gt_topic is None:
        return image_conn, None
    if gt_topic not in conns:
        raise DatasetError(f"bag {path} has no ground-truth topic '{gt_topic}'; topics: {sorted(conns)}")
    if conns[gt_topic].msgtype != IMAGE_TYPE:
        raise DatasetError(f"bag {path}: ground-truth topic '{gt_topic}' is {conns[gt_topic].msgtype}, not mono8 Image")
    return image_conn, conns[gt_topic]


def _names(path: Path) -> tuple[str, ...]:
    """Frame names from ``custom_data`` in ``metadata.yaml`` (empty when absent or unreadable)."""
    import yaml

    try:
        info = yaml.safe_load((path / "metadata.yaml").read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
        raw = (info.get("custom_data") or {}).get(FRAME_NAMES_KEY)
        return () if raw is None else tuple(str(n) for n in json.loads(raw))
    except (OSError, KeyError, TypeError, ValueError, AttributeError, yaml.YAMLError):
        return ()


def inspect_bag(path: str | Path, *, image_topic: str | None = None, gt_topic: str | None = None) -> BagInfo:
    """Describe a bag's image and ground-truth topics (see :class:`BagInfo`) without reading payloads."""
    path = Path(path)
    reader = _open(path)
    try:
        image_conn, gt_conn = _pick_topics(reader, path, image_topic, gt_topic)
        counts = {c.topic: 0 for c in reader.connections}
        for c in reader.connections:
            counts[c.topic] += c.msgcount
        n_gt = counts[gt_conn.topic] if gt_conn is not None else 0
        return BagInfo(
            path=path,
            image_topic=image_conn.topic,
            image_type=image_conn.msgtype,
            ground_truth_topic=gt_conn.topic if gt_conn is not None and n_gt else None,
            frames=counts[image_conn.topic],
            frames_with_ground_truth=n_gt,
            names=_names(path),
            duration_ns=int(reader.duration),
        )
    finally:
        reader.close()


def iter_frames(
    path: str | Path,
    *,
    image_topic: str | None = None,
    gt_topic: str | None = None,
    decode_images: bool = True,
) -> Iterator[BagFrame]:
    """Yield the bag's camera frames in log-time order, each with the ground truth of the same stamp.

    A frame whose stamp has a ground-truth message anywhere in the bag waits (in memory) until that message is
    read; other frames are yielded at once with ``ood=None``. Memory stays bounded by how far image and
    ground truth are apart in the bag.

    Args:
        path: bag directory.
        image_topic, gt_topic: explicit topics (default: found as in :func:`inspect_bag`).
        decode_images: also decode every image to numpy (``BagFrame.image``); off for pure replay.
    """
    path = Path(path)
    reader = _open(path)
    try:
        image_conn, gt_conn = _pick_topics(reader, path, image_topic, gt_topic)
        names = _names(path)
        gt_stamps: set[int] = set()
        if gt_conn is not None:
            for _, _, data in reader.messages(connections=[gt_conn]):
                gt_stamps.add(header_stamp_ns(deserialize(data, IMAGE_TYPE, where=f"{path}:{gt_conn.topic}")))
        waiting_frames: dict[int, BagFrame] = {}
        waiting_gt: dict[int, np.ndarray] = {}
        index = 0
        conns = [image_conn] if gt_conn is None else [image_conn, gt_conn]
        for conn, _, data in reader.messages(connections=conns):
            where = f"{path}:{conn.topic}"
            msg = deserialize(data, conn.msgtype, where=where)
            stamp = header_stamp_ns(msg)
            if conn is gt_conn:
                gt = image_to_array(msg, where=where)
                if gt.ndim != 2 or gt.dtype != np.uint8:
                    raise DatasetError(f"{where}: ground truth must be mono8, got encoding '{msg.encoding}'")
                if stamp in waiting_frames:
                    frame = waiting_frames.pop(stamp)
                    frame.ood = gt
                    yield frame
                else:
                    waiting_gt[stamp] = gt
                continue
            name = names[index] if index < len(names) else f"frame_{index:06d}"
            image = message_to_array(msg, conn.msgtype, where=where) if decode_images else None
            frame = BagFrame(index, stamp, bytes(data), image, waiting_gt.pop(stamp, None), name)
            index += 1
            if frame.ood is None and stamp in gt_stamps:
                if stamp in waiting_frames:
                    raise DatasetError(
                        f"{where}: frames {waiting_frames[stamp].index} and {frame.index} share the stamp {stamp} ns; "
                        "ground truth is paired by stamp, so stamps must be unique"
                    )
                waiting_frames[stamp] = frame
            else:
                yield frame
        yield from sorted(waiting_frames.values(), key=lambda f: f.index)
    finally:
        reader.close()
