"""Dataset -> rosbag2: camera images, CameraInfo and the anomaly ground truth, stamped at a fixed rate.

Each sample becomes, at header stamp ``start_ns + i * period_ns`` (also the bag's log time):

- the image on ``/camera/image`` (``sensor_msgs/Image`` rgb8) or ``/camera/image/compressed``
  (``sensor_msgs/CompressedImage``, jpeg or png),
- ``/camera/camera_info`` (``sensor_msgs/CameraInfo``, given intrinsics or a plausible 60 deg pinhole),
- the ground truth on ``/camera/ood_gt`` (``sensor_msgs/Image`` mono8: 0 in-distribution, 1 anomaly, 255 void).

The bag's ``custom_data`` (rosbag2 metadata) records the frame names and the writing options, so
:mod:`moose_ros.bag.reader` and the evaluation report can name frames.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.bag.messages import (
    CAMERA_INFO_TYPE,
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    CameraIntrinsics,
    camera_info_msg,
    compressed_msg,
    image_msg,
    serialize,
    typestore,
)
from moose_ros.bag.topics import check_topic_name
from moose_ros.errors import ConfigError, DatasetError
from moose_ros.outputs import check_new_dir, staged_dir

__all__ = [
    "DEFAULT_START_NS",
    "FRAME_NAMES_KEY",
    "MAX_STAMP_NS",
    "OPTIONS_KEY",
    "BagSummary",
    "BagTopics",
    "BagWriteOptions",
    "write_bag",
]

#: Latest header stamp a message can carry: builtin_interfaces/Time ``sec`` is an int32 (2038-01-19T03:14:07Z).
MAX_STAMP_NS = (2**31 - 1) * 1_000_000_000 + 999_999_999
#: Default stamp of the first frame: 2024-01-01T00:00:00Z in nanoseconds (fixed, so bags are reproducible).
DEFAULT_START_NS = 1_704_067_200 * 1_000_000_000
#: ``custom_data`` key holding a JSON list of frame names in stamp order.
FRAME_NAMES_KEY = "moose_ros.frame_names"
#: ``custom_data`` key holding the JSON of the :class:`BagWriteOptions` used.
OPTIONS_KEY = "moose_ros.options"

STORAGES = ("mcap", "sqlite3")
IMAGE_FORMATS = ("raw", "jpeg", "png")


@dataclass(frozen=True)
class BagTopics:
    """Topic names; the compressed image goes to ``image + "/compressed"`` (image_transport convention)."""

    image: str = "/camera/image"
    camera_info: str = "/camera/camera_info"
    ood_gt: str = "/camera/ood_gt"

    def __post_init__(self) -> None:
        for name in ("image", "camera_info", "ood_gt"):
            check_topic_name(getattr(self, name), f"{name} topic")

    @property
    def compressed(self) -> str:
        """Topic of ``sensor_msgs/CompressedImage`` frames."""
        return self.image.rstrip("/") + "/compressed"


@dataclass(frozen=True)
class BagWriteOptions:
    """How :func:`write_bag` writes a dataset.

    Attributes:
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
        image_format: ``"raw"`` (Image rgb8), ``"jpeg"`` or ``"png"`` (CompressedImage).
        jpeg_quality: 1-100, for ``image_format="jpeg"``.
        rate_hz: frames per second of the stamps (> 0).
        start_ns: stamp of the first frame, nanoseconds since the epoch.
        frame_id: ``header.frame_id`` of every message.
        camera: intrinsics for CameraInfo, or None for :meth:`CameraIntrinsics.default` of each frame's size.
        ground_truth: write the ``ood_gt`` topic (ignored for samples whose ``ood`` is None).
        topics: topic names.
    """

    storage: str = "mcap"
    image_format: str = "raw"
    jpeg_quality: int = 95
    rate_hz: float = 10.0
    start_ns: int = DEFAULT_START_NS
    frame_id: str = "camera"
    camera: CameraIntrinsics | None = None
    ground_truth: bool = True
    topics: BagTopics = field(default_factory=BagTopics)

    def __post_init__(self) -> None:
        if self.storage not in STORAGES:
            raise ConfigError(f"bag storage '{self.storage}' is unknown; allowed: {', '.join(STORAGES)}")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"image format '{self.image_format}' is unknown; allowed: {', '.join(IMAGE_FORMATS)}")
        if not 1 <= int(self.jpeg_quality) <= 100:
            raise ConfigError(f"jpeg quality {self.jpeg_quality} is outside 1..100")
        if not (self.rate_hz > 0 and np.isfinite(self.rate_hz)):
            raise ConfigError(f"rate {self.rate_hz} Hz must be a positive finite number")
        if not 0 <= int(self.start_ns) <= MAX_STAMP_NS:
            raise ConfigError(f"start time {int(self.start_ns) / 1e9:.9f} s is outside 0..{MAX_STAMP_NS // 10**9} s "
                              "(a ROS 2 stamp holds int32 seconds)")

    @property
    def period_ns(self) -> float:
        """Time between frames in nanoseconds."""
        return 1e9 / self.rate_hz

    def stamp_ns(self, index: int) -> int:
        """Header stamp of frame ``index``, nanoseconds (rounded to the nearest ns)."""
        return int(self.start_ns) + round(index * self.period_ns)

    def to_json(self) -> str:
        """The options as JSON (stored in the bag's custom_data)."""
        camera = None if self.camera is None else self.camera.__dict__ | {"distortion": list(self.camera.distortion)}
        return json.dumps(
            {
                "storage": self.storage,
                "image_format": self.image_format,
                "jpeg_quality": self.jpeg_quality,
                "rate_hz": self.rate_hz,
                "start_ns": int(self.start_ns),
                "frame_id": self.frame_id,
                "camera": camera,
                "topics": self.topics.__dict__,
            },
            sort_keys=True,
        )


@dataclass(frozen=True)
class BagSummary:
    """What :func:`write_bag` wrote: path, frame count, topics and the stamp range in nanoseconds."""

    path: Path
    frames: int
    frames_with_ground_truth: int
    image_topic: str
    image_type: str
    ground_truth_topic: str | None
    start_ns: int
    end_ns: int
    storage: str


def _storage_plugin(name: str) -> Any:
    from rosbags.rosbag2 import StoragePlugin

    return {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[name]


def _sample_fields(sample: Any, index: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(image uint8 [H,W,3], ood uint8 [H,W] or None, name) of an OodSample-like record, validated."""
    try:
        image, ood, name = sample.image, getattr(sample, "ood", None), str(getattr(sample, "name", index))
    except AttributeError as err:
        raise DatasetError(f"sample {index}: expected an OodSample (image, ood, name), got {type(sample)}") from err
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DatasetError(f"sample {index} ('{name}'): image must be uint8 [H, W, 3], got {image.shape} {image.dtype}")
    if ood is not None:
        ood = np.asarray(ood)
        if ood.shape != image.shape[:2] or ood.dtype != np.uint8:
            raise DatasetError(
                f"sample {index} ('{name}'): ood must be uint8 {image.shape[:2]}, got {ood.shape} {ood.dtype}"
            )
    return image, ood, name


def write_bag(
    samples: Iterable[Any],
    out: str | Path,
    options: BagWriteOptions | None = None,
    *,
    total: int | None = None,
    progress: bool = False,
) -> BagSummary:
    """Write ``samples`` (OodSample-like: ``image``, ``ood`` (may be None), ``name``) as a rosbag2 directory.

    Args:
        samples: the frames in order (a dataset reader or any iterable).
        out: bag directory to create; must not exist yet.
        options: see :class:`BagWriteOptions`.
        total: number of samples, for the progress bar and the stamp range check (``len(samples)`` when
            available).
        progress: show a tqdm progress bar on stderr.

    Returns:
        A :class:`BagSummary`. The bag is written under a temporary name beside ``out`` and renamed when complete:
        on any error nothing is left at ``out``.
    """
    options = options or BagWriteOptions()
    out = check_new_dir(out, "bag output")
    if total is None and hasattr(samples, "__len__"):
        total = len(samples)  # type: ignore[arg-type]
    if total and options.stamp_ns(total - 1) > MAX_STAMP_NS:
        raise ConfigError(f"the stamp of frame {total - 1} would pass {MAX_STAMP_NS // 10**9} s (int32 seconds); "
                          "choose an earlier start time or a higher rate")
    with staged_dir(out, "bag output") as stage:
        names, n_gt = _write_frames(samples, stage, out, options, total, progress)
    compressed = options.image_format != "raw"
    return BagSummary(
        path=out,
        frames=len(names),
        frames_with_ground_truth=n_gt,
        image_topic=options.topics.compressed if compressed else options.topics.image,
        image_type=COMPRESSED_TYPE if compressed else IMAGE_TYPE,
        ground_truth_topic=options.topics.ood_gt if n_gt else None,
        start_ns=options.stamp_ns(0),
        end_ns=options.stamp_ns(len(names) - 1),
        storage=options.storage,
    )


def _write_frames(samples: Iterable[Any], stage: Path, out: Path, options: BagWriteOptions, total: int | None,
                  progress: bool) -> tuple[list[str], int]:
    """Write the bag into the new directory ``stage`` (``out`` names it in messages); returns (names, frames
    with ground truth)."""
    from rosbags.rosbag2 import Writer, WriterError

    compressed = options.image_format != "raw"
    topics = options.topics
    image_topic, image_type = (topics.compressed, COMPRESSED_TYPE) if compressed else (topics.image, IMAGE_TYPE)
    ts = typestore()
    names: list[str] = []
    n_gt = 0
    stage.rmdir()  # rosbags creates the bag directory itself
    writer = Writer(stage, version=Writer.VERSION_LATEST, storage_plugin=_storage_plugin(options.storage))
    try:
        writer.open()
        conn_image = writer.add_connection(image_topic, image_type, typestore=ts)
        conn_info = writer.add_connection(topics.camera_info, CAMERA_INFO_TYPE, typestore=ts)
        conn_gt = writer.add_connection(topics.ood_gt, IMAGE_TYPE, typestore=ts) if options.ground_truth else None
        iterator: Iterable[Any] = samples
        if progress:
            from tqdm import tqdm

            iterator = tqdm(samples, total=total, desc=f"bag {out.name}", unit="frame")
        for index, sample in enumerate(iterator):
            image, ood, name = _sample_fields(sample, index)
            stamp = options.stamp_ns(index)
            if stamp > MAX_STAMP_NS:
                raise ConfigError(f"the stamp of frame {index} passes {MAX_STAMP_NS // 10**9} s (int32 seconds)")
            height, width = image.shape[:2]
            camera = options.camera or CameraIntrinsics.default(width, height)
            if (camera.width, camera.height) != (width, height):
                raise ConfigError(
                    f"camera intrinsics are for {camera.width}x{camera.height} but sample {index} ('{name}') "
                    f"is {width}x{height}"
                )
            if compressed:
                msg = compressed_msg(
                    image,
                    stamp_ns=stamp,
                    frame_id=options.frame_id,
                    fmt=options.image_format,
                    jpeg_quality=options.jpeg_quality,
                )
            else:
                msg = image_msg(image, stamp_ns=stamp, frame_id=options.frame_id, encoding="rgb8")
            writer.write(conn_image, stamp, serialize(msg, image_type))
            info = camera_info_msg(camera, stamp_ns=stamp, frame_id=options.frame_id)
            writer.write(conn_info, stamp, serialize(info, CAMERA_INFO_TYPE))
            if conn_gt is not None and ood is not None:
                gt = image_msg(ood, stamp_ns=stamp, frame_id=options.frame_id, encoding="mono8")
                writer.write(conn_gt, stamp, serialize(gt, IMAGE_TYPE))
                n_gt += 1
            names.append(name)
        if not names:
            raise DatasetError(f"no samples to write into {out}: the dataset is empty")
        writer.set_custom_data(FRAME_NAMES_KEY, json.dumps(names))
        writer.set_custom_data(OPTIONS_KEY, options.to_json())
        writer.close()
    except (WriterError, OSError) as err:
        _abort(writer)
        raise DatasetError(f"cannot write bag {out}: {err}") from err
    except BaseException:
        _abort(writer)
        raise
    return names, n_gt


def _abort(writer: Any) -> None:
    """Close the storage handles of a partly written bag (its directory is removed by the caller)."""
    if writer.storage is not None:
        with contextlib.suppress(Exception):  # best effort; the caller re-raises the original error
            writer.storage.abort()
        writer.storage = None
