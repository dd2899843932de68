"""Shared helpers of the bad-input tests (no tests here): the real ``moose`` CLI in a subprocess, real dataset
layouts written by SynthStreet, and PNG files damaged the way a disk or a download damages them."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

from moose_ros.dds import allocate_domain_id, loopback_env

REPO = Path(__file__).resolve().parents[1]

#: the one line a refused run prints: "moose <tool>: error: ..." (argparse uses "moose <tool> <sub>: error:")
ERROR_LINE = re.compile(r"^moose [a-z -]+: error: (.+)$")


def moose(args: Sequence[str], cwd: Path, *, env: Mapping[str, str] | None = None,
          timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m moose_ros.cli ARGS`` in ``cwd`` (loopback DDS, a domain of its own, one thread)."""
    full = dict(os.environ)
    full.update(loopback_env(allocate_domain_id(), log_dir=cwd / ".ros_logs"))
    full.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), full.get("PYTHONPATH", "")])})
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "moose_ros.cli", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=timeout, check=False)


def assert_refused(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    """Assert exit status 2, no traceback and exactly one ``moose ...: error:`` line holding every ``words``;
    returns that line."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, f"exit {proc.returncode}\n{out}"
    assert "Traceback" not in out, out
    errors = [line for line in proc.stderr.splitlines() if ERROR_LINE.match(line)]
    assert len(errors) == 1, f"expected one error line, got {errors}\n{out}"
    line = errors[0]
    for word in words:
        assert word in line, f"{word!r} missing from: {line}"
    return line


def listing(root: Path) -> list[str]:
    """Every path under ``root`` (relative, sorted, hidden ones included): what a run left behind."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def write_ood_layouts(root: Path, *, count: int = 2, height: int = 32, width: int = 64, seed: int = 5) -> Path:
    """SynthStreet OoD frames in the LostAndFound and Fishyscapes layouts under ``root`` (split test)."""
    from moose_ros.data.synth import write_synthstreet

    write_synthstreet(root, split="test", count=count, layout="lostandfound,fishyscapes", seed=seed,
                      height=height, width=width, ood=True)
    return root


def fs_files(root: Path) -> tuple[list[Path], list[Path]]:
    """(images, labels) of a Fishyscapes-layout root, sorted."""
    return sorted((root / "images").glob("*.png")), sorted((root / "labels").glob("*.png"))


def laf_labels(root: Path) -> list[Path]:
    """The gtCoarse labelIds files of a LostAndFound-layout root (split test), sorted."""
    return sorted((root / "gtCoarse" / "test").rglob("*_gtCoarse_labelIds.png"))


def corrupt_png_chunk(path: Path) -> None:
    """Flip one byte of the first IDAT chunk's data: the chunk's CRC no longer matches ("broken PNG file")."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IDAT") + 4
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def png_bomb(path: Path, width: int = 30000, height: int = 30000) -> None:
    """Rewrite the IHDR of the PNG at ``path`` to claim ``width`` x ``height`` pixels (valid CRC): a tiny file
    that would decompress to gigabytes."""
    data = bytearray(path.read_bytes())
    at = data.index(b"IHDR")
    data[at + 4 : at + 12] = struct.pack(">II", width, height)
    data[at + 17 : at + 21] = struct.pack(">I", zlib.crc32(bytes(data[at : at + 17])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))


def set_label_pixels(path: Path, value: int, count: int = 6) -> None:
    """Set the first ``count`` pixels of the label PNG at ``path`` to ``value`` (kept as an 8-bit PNG)."""
    import numpy as np
    from PIL import Image

    label = np.array(Image.open(path))
    label.reshape(-1)[:count] = value
    Image.fromarray(label).save(path)


def passthrough_graph(path: Path, *, float_input: bool = False) -> Path:
    """The node benchmark's no-compute fused graph (labels = R, anomaly = G, ``moose export`` metadata) at
    ``path``; with ``float_input`` its image input is float32 (a valid graph the node cannot feed)."""
    import onnx
    from onnx import TensorProto, helper

    from moose_ros.ros.bench import passthrough_model

    passthrough_model(path)
    if float_input:
        model = onnx.load(str(path))
        model.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
        for node in model.graph.node:
            node.output[:] = ["labels_f" if name == "labels" else name for name in node.output]
        model.graph.node.append(helper.make_node("Cast", ["labels_f"], ["labels"], to=TensorProto.UINT8))
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return path


class Exploit:
    """Pickled, it runs ``touch PWNED`` when unpickled by anything but a weights-only loader."""

    def __reduce__(self):
        return os.system, ("touch PWNED",)
