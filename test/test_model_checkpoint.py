"""Self-describing checkpoints: round trip, weights_only refusal, meta checks against builder arguments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from moose_ros.errors import CheckpointError, ConfigError
from moose_ros.model import (
    CheckpointMeta,
    build_model,
    load_checkpoint,
    moose_deeplabv3_resnet18,
    moose_deeplabv3_resnet50,
    read_checkpoint,
    save_checkpoint,
)

CLASSES = tuple(f"class{i}" for i in range(5))
COLORS = tuple((i * 40, 255 - i * 40, 7 * i) for i in range(5))
SMALL = {"num_classes": 5, "aspp_channels": 32, "probe_width": 16, "probe_depth": 2, "atrous_rates": (2, 4, 6)}


def _small_model(**overrides):
    torch.manual_seed(0)
    model = moose_deeplabv3_resnet18(**{**SMALL, **overrides})
    with torch.no_grad():  # move BN statistics and the probes away from their initial values
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _meta(model) -> CheckpointMeta:
    return CheckpointMeta.for_model(
        model,
        classes=CLASSES,
        colors=COLORS,
        ignore_index=255,
        input_size=(64, 128),
        probe_config={"trained": True},
        recipe={"optimizer": "sgd", "lr": 0.01, "steps": 3, "crop": (64, 128)},
        metrics={"val_miou": 0.5},
    )


def test_round_trip_keeps_outputs_and_meta(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    model = _small_model()
    meta = _meta(model)
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, meta)
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left behind

    loaded, loaded_meta = load_checkpoint(path)

    assert loaded_meta == meta
    assert loaded_meta.probe_config == {"num_probes": 4, "width": 16, "depth": 2, "trained": True}
    assert loaded.architecture == "deeplabv3_resnet18" and loaded.model_kwargs == model.model_kwargs
    assert not loaded.training
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a["out"], b["out"])
    assert all(torch.equal(p, q) for p, q in zip(a["probes"], b["probes"], strict=True))
    # the builder with checkpoint= takes every argument from the meta
    rebuilt = moose_deeplabv3_resnet18(checkpoint=path)
    assert rebuilt.model_kwargs == model.model_kwargs
    with torch.no_grad():
        assert torch.equal(rebuilt(x)["out"], a["out"])


class _Trap:
    """An object whose unpickling would run code (create a directory)."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (str(self.target),))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    model = _small_model()
    trap_dir = tmp_path / "trap_fired"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "moose_ros.checkpoint", "format_version": 1, "meta": _meta(model).to_json(),
                "state_dict": model.state_dict(), "extra": _Trap(trap_dir)}, evil)
    with pytest.raises(CheckpointError, match=r"refused to load.*os\.makedirs"):
        load_checkpoint(evil)
    assert not trap_dir.exists()
    whole_module = tmp_path / "module.pt"
    torch.save(model, whole_module)
    with pytest.raises(CheckpointError, match="refused"):
        read_checkpoint(whole_module)


def test_conflicting_builder_arguments_name_both_values(tmp_path: Path) -> None:
    model = _small_model()
    path = save_checkpoint(tmp_path / "m.pt", model, _meta(model))
    with pytest.raises(CheckpointError, match=r"num_classes=21.*num_classes=5"):
        build_model("deeplabv3_resnet18", num_classes=21, checkpoint=path)
    with pytest.raises(CheckpointError, match=r"probe_depth=1.*probe_depth=2"):
        moose_deeplabv3_resnet18(probe_depth=1, checkpoint=path)
    with pytest.raises(CheckpointError, match=r"deeplabv3_resnet18.*deeplabv3_resnet50"):
        moose_deeplabv3_resnet50(checkpoint=path)
    # agreeing arguments (tuple vs the stored list) are accepted
    agreed = moose_deeplabv3_resnet18(num_classes=5, atrous_rates=(2, 4, 6), checkpoint=path)
    assert agreed.num_probes == 4


def test_meta_must_describe_the_model(tmp_path: Path) -> None:
    model = _small_model()
    other = _small_model(probe_width=8)
    with pytest.raises(CheckpointError, match=r"probe_width: meta 8 vs model 16"):
        save_checkpoint(tmp_path / "x.pt", model, _meta(other))
    with pytest.raises(ConfigError, match=r"4 colors for 5 classes"):
        CheckpointMeta.for_model(model, classes=CLASSES, colors=COLORS[:4])
    with pytest.raises(ConfigError, match=r"num_classes=5 but 3 class names"):
        CheckpointMeta.for_model(model, classes=CLASSES[:3], colors=COLORS[:3])
    assert not (tmp_path / "x.pt").exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(CheckpointError, match="not a moose_ros checkpoint"):
        load_checkpoint(plain)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match=r"garbage.pt: not a torch checkpoint"):
        load_checkpoint(garbage)
