"""Shared helpers of the trainer tests (no tests here): tiny SynthStreet data, a tiny recipe, weight snapshots."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]

#: a MobileNetV3 DeepLabV3 small enough for a few CPU steps at 64x128 (4x8 features at output stride 16)
TINY_MODEL: dict[str, Any] = {
    "architecture": "deeplabv3_mobilenet_v3_large",
    "kwargs": {"num_classes": 19, "aspp_channels": 16, "probe_width": 16, "probe_depth": 1,
               "atrous_rates": [1, 2, 3], "output_stride": 16, "reduced_tail": True},
}


def make_synth(root: Path, *, train: int = 8, val: int = 2, size_hw: tuple[int, int] = (64, 128)) -> Path:
    """Generate a tiny SynthStreet dataset (Cityscapes layout, seed 123) under ``root`` and return ``root``."""
    from moose_ros.data.synth import write_synthstreet

    h, w = size_hw
    write_synthstreet(root, split="train", count=train, seed=123, height=h, width=w)
    write_synthstreet(root, split="val", count=val, seed=123, height=h, width=w)
    return root


def write_recipe(path: Path, data_root: Path, **stages: dict[str, Any]) -> Path:
    """Write a tiny recipe: the TINY_MODEL, ``data_root``, and ``stages`` merged over small defaults."""
    small = {"steps": 4, "batch_size": 4, "lr": 0.05, "val_every": 0, "flip": False, "log_every": 1}
    raw = {"seed": 0, "data": {"kind": "cityscapes", "root": str(data_root), "val_split": "val"},
           "model": TINY_MODEL, **{name: {**small, **cfg} for name, cfg in stages.items()}}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def ood_recipe_and_runs(tmp: Path) -> tuple[Path, Path]:
    """Tiny data + a 3-scene Fishyscapes-layout OoD split (seed 5), a recipe whose probes / refit train 3 steps
    on cached features with that split as ``data.ood_root``, and ``tmp/runs/base.pt`` (an untrained base)."""
    from moose_ros.data.synth import write_synthstreet

    data = make_synth(tmp / "synth")
    ood_root = tmp / "ood"
    write_synthstreet(ood_root, split="test", count=3, seed=5, height=64, width=128, ood=True, layout="fishyscapes")
    recipe = write_recipe(tmp / "r.yaml", data, probes={"steps": 3, "cache_features": True},
                          refit={"steps": 3, "cache_features": True})
    raw = yaml.safe_load(recipe.read_text())
    raw["data"].update(ood_kind="fishyscapes_laf", ood_root=str(ood_root), ood_seed=5)
    recipe.write_text(yaml.safe_dump(raw))
    runs = tmp / "runs"
    random_base(runs / "base.pt")
    return recipe, runs


def random_base(path: Path, seed: int = 0) -> Path:
    """Save an untrained TINY_MODEL checkpoint (random trunk, BN statistics moved once) to ``path``."""
    from moose_ros.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
    from moose_ros.model import CheckpointMeta, build_model, save_checkpoint

    torch.manual_seed(seed)
    model = build_model(TINY_MODEL["architecture"], **TINY_MODEL["kwargs"])
    model.train()
    with torch.no_grad():  # give the BatchNorm layers non-trivial running statistics
        model(torch.randn(4, 3, 64, 128))
    meta = CheckpointMeta.for_model(model, classes=CITYSCAPES_CLASSES, colors=CITYSCAPES_COLORS)
    return save_checkpoint(path, model.eval(), meta)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copy of every parameter and buffer of ``model``."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """Environment for trainer subprocesses: one thread each, loopback rendezvous, repo on the path."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
                "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])})
    env.update(extra)
    return env


PYTHON = sys.executable
