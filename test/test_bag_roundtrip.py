"""Dataset (LostAndFound layout) -> rosbag2 (mcap, sqlite3; raw, png, jpeg) -> frames read back."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moose_ros.bag import BagWriteOptions, CameraIntrinsics, inspect_bag, iter_frames, write_bag
from moose_ros.bag.messages import CAMERA_INFO_TYPE, IMAGE_TYPE, deserialize, header_stamp_ns
from moose_ros.errors import ConfigError
from moose_ros.tools import bag as bag_tool

H, W, N = 48, 80, 4


def _write_laf(root: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """A LostAndFound test split: smooth RGB frames, gtCoarse labelIds 0 (void), 1 (road), 2 (obstacle).

    Returns the expected (image uint8 [H,W,3], ood uint8 [H,W] 0/1/255) per frame in name order.
    """
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    expected = []
    for i in range(N):
        base = np.stack([xx * 3 + 20 * i, yy * 4, (xx + yy) * 2], axis=2)
        image = np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
        label = np.ones((H, W), np.uint8)
        label[:6] = 0
        label[20 + i : 30 + i, 10 + 5 * i : 25 + 5 * i] = 2 + i % 2
        name = f"city_{i:06d}_000030"
        for sub, suffix, array in (
            ("leftImg8bit", "leftImg8bit", image),
            ("gtCoarse", "gtCoarse_labelIds", label),
        ):
            path = root / sub / "test" / "city" / f"{name}_{suffix}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(path)
        ood = np.where(label == 0, 255, np.where(label >= 2, 1, 0)).astype(np.uint8)
        expected.append((image, ood))
    return expected


def _from_dataset(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bag_tool.add_arguments(parser)
    return bag_tool.run(parser.parse_args(["from-dataset", *argv]))


@pytest.fixture(scope="module")
def laf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[np.ndarray, np.ndarray]]]:
    root = tmp_path_factory.mktemp("laf")
    return root, _write_laf(root)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("image_format", ["raw", "png", "jpeg"])
def test_dataset_bag_roundtrip(laf, tmp_path: Path, storage: str, image_format: str) -> None:
    root, expected = laf
    out = tmp_path / "laf.bag"
    argv = ["-o", str(out), "--root", str(root), "--dataset", "lostandfound", "--split", "test", "--storage", storage,
            *([] if image_format == "raw" else ["--compressed", image_format]), "--rate", "20",
            "--start-time", "1704067200.123456789", "--frame-id", "cam_front", "--no-progress"]
    assert _from_dataset(argv) == 0

    info = inspect_bag(out)
    assert info.frames == N and info.frames_with_ground_truth == N
    assert info.image_topic == ("/camera/image" if image_format == "raw" else "/camera/image/compressed")
    assert info.ground_truth_topic == "/camera/ood_gt"
    assert len(info.names) == N and all(n.endswith(f"city_{i:06d}_000030") for i, n in enumerate(info.names))
    storage_files = [p.suffix for p in out.iterdir() if p.name != "metadata.yaml"]
    assert storage_files == [".mcap" if storage == "mcap" else ".db3"]

    frames = list(iter_frames(out))
    assert [f.index for f in frames] == list(range(N))
    for i, (frame, (image, ood)) in enumerate(zip(frames, expected, strict=True)):
        assert frame.stamp_ns == 1_704_067_200_123_456_789 + i * 50_000_000
        assert frame.name == info.names[i]
        assert frame.ood is not None and frame.ood.dtype == np.uint8
        np.testing.assert_array_equal(frame.ood, ood)
        assert frame.image is not None and frame.image.shape == (H, W, 3)
        if image_format == "jpeg":
            diff = np.abs(frame.image.astype(np.int16) - image.astype(np.int16))
            assert diff.mean() < 3.0, diff.mean()
            assert not np.array_equal(frame.image, image)  # lossy, yet close
        else:
            np.testing.assert_array_equal(frame.image, image)


def test_camera_info_and_rclpy_compatible_payloads(laf, tmp_path: Path) -> None:
    """CameraInfo carries the given intrinsics; bag payloads deserialise with rclpy (what the replay publishes)."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import CameraInfo
    from sensor_msgs.msg import Image as RosImage

    from moose_ros.data import open_dataset

    root, expected = laf
    camera = CameraIntrinsics(W, H, fx=70.0, fy=71.0, cx=39.0, cy=23.5, distortion=(0.1, -0.01, 0.0, 0.0, 0.002))
    options = BagWriteOptions(storage="mcap", rate_hz=5.0, start_ns=7, frame_id="cam", camera=camera)
    summary = write_bag(open_dataset("lostandfound", root, "test"), tmp_path / "b", options)
    assert (summary.frames, summary.start_ns, summary.end_ns) == (N, 7, 7 + 3 * 200_000_000)

    with Reader(tmp_path / "b") as reader:
        by_topic: dict[str, list[bytes]] = {}
        for conn, timestamp, data in reader.messages():
            by_topic.setdefault(conn.topic, []).append(bytes(data))
            stamp = header_stamp_ns(deserialize(data, conn.msgtype))
            assert timestamp == stamp  # log time = header stamp
    assert sorted(by_topic) == ["/camera/camera_info", "/camera/image", "/camera/ood_gt"]
    info = deserialize_message(by_topic["/camera/camera_info"][0], CameraInfo)
    assert (info.width, info.height, info.header.frame_id) == (W, H, "cam")
    np.testing.assert_allclose(info.k, [70.0, 0, 39.0, 0, 71.0, 23.5, 0, 0, 1])
    np.testing.assert_allclose(info.d, camera.distortion)
    assert deserialize(by_topic["/camera/camera_info"][1], CAMERA_INFO_TYPE).p[0] == 70.0
    for i, raw in enumerate(by_topic["/camera/image"]):
        msg = deserialize_message(raw, RosImage)
        assert (msg.encoding, msg.step, msg.header.stamp.nanosec) == ("rgb8", 3 * W, (7 + i * 200_000_000) % 10**9)
        np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(H, W, 3), expected[i][0])
        gt = deserialize_message(by_topic["/camera/ood_gt"][i], RosImage)
        assert gt.encoding == "mono8"
        np.testing.assert_array_equal(np.frombuffer(gt.data, np.uint8).reshape(H, W), expected[i][1])


def test_default_intrinsics_and_errors(laf, tmp_path: Path) -> None:
    root, _ = laf
    cam = CameraIntrinsics.default(640, 480)
    assert cam.fx == pytest.approx(640 / (2 * np.tan(np.radians(30)))) and cam.cx == pytest.approx(319.5)
    with pytest.raises(ConfigError, match="exists already"):
        _from_dataset(["-o", str(root), "--root", str(root), "--no-progress"])
    with pytest.raises(ConfigError, match="camera intrinsics are for 640x480"):
        write_bag(_samples(root), tmp_path / "x", BagWriteOptions(camera=cam))
    assert not (tmp_path / "x").exists()  # a failed write leaves nothing behind
    with pytest.raises(ConfigError, match="rate"):
        BagWriteOptions(rate_hz=0.0)
    with pytest.raises(ConfigError, match="storage 'rosbag1'"):
        BagWriteOptions(storage="rosbag1")
    yaml_path = tmp_path / "cam.yaml"
    yaml_path.write_text(
        f"image_width: {W}\nimage_height: {H}\n"
        "camera_matrix: {rows: 3, cols: 3, data: [50, 0, 40, 0, 50, 24, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n"
    )
    out = tmp_path / "y"
    assert _from_dataset(["-o", str(out), "--root", str(root), "--split", "test", "--camera-info", str(yaml_path),
                          "--no-gt", "--limit", "2", "--no-progress"]) == 0
    info = inspect_bag(out)
    assert (info.frames, info.ground_truth_topic) == (2, None)
    assert all(f.ood is None for f in iter_frames(out))


def _samples(root: Path) -> list:
    from moose_ros.data import open_dataset

    return list(open_dataset("lostandfound", root, "test"))


def test_gt_pairing_by_stamp_not_order(tmp_path: Path) -> None:
    """A bag where ground truth precedes its image in log time still pairs by header stamp."""
    from rosbags.rosbag2 import Writer

    from moose_ros.bag.messages import image_msg, serialize, typestore

    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (8, 12, 3), dtype=np.uint8) for _ in range(3)]
    gts = [rng.integers(0, 2, (8, 12), dtype=np.uint8) for _ in range(3)]
    with Writer(tmp_path / "b", version=9) as writer:
        ci = writer.add_connection("/camera/image", IMAGE_TYPE, typestore=typestore())
        cg = writer.add_connection("/camera/ood_gt", IMAGE_TYPE, typestore=typestore())
        for i in range(3):
            stamp = 1_000 + i
            # ground truth logged 10 ns *before* the image; the last frame has none
            if i < 2:
                writer.write(cg, stamp * 100 - 10, serialize(image_msg(gts[i], stamp_ns=stamp, frame_id="c"),
                                                             IMAGE_TYPE))
            writer.write(ci, stamp * 100, serialize(image_msg(images[i], stamp_ns=stamp, frame_id="c"), IMAGE_TYPE))
    frames = list(iter_frames(tmp_path / "b"))
    assert [f.stamp_ns for f in frames] == [1000, 1001, 1002]
    for i, frame in enumerate(frames[:2]):
        np.testing.assert_array_equal(frame.ood, gts[i])
        np.testing.assert_array_equal(frame.image, images[i])
    assert frames[2].ood is None and frames[2].name == "frame_000002"
