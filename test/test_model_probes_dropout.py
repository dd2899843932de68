"""Probe dropout: active in training only, absent at p = 0, and a training-only argument of checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from moose_ros.errors import ConfigError
from moose_ros.model import Probe, build_model, load_checkpoint
from moose_ros.model.checkpoint import CheckpointMeta, save_checkpoint

KW = {"num_classes": 19, "aspp_channels": 16, "probe_width": 16, "probe_depth": 1, "atrous_rates": [1, 2, 3],
      "output_stride": 16, "reduced_tail": True}


def test_dropout_is_active_in_training_only() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    probe = Probe(8, 5, width=16, depth=1, dropout=0.5).train()
    assert not torch.equal(probe(x), probe(x))  # two masks
    probe.eval()
    assert torch.equal(probe(x), probe(x))
    plain = Probe(8, 5, width=16, depth=1, dropout=0.0).train()
    assert torch.equal(plain(x), plain(x))


def test_probe_dropout_is_validated_and_overridable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="probe_dropout"):
        build_model("deeplabv3_mobilenet_v3_large", probe_dropout=1.0, **KW)
    model = build_model("deeplabv3_mobilenet_v3_large", probe_dropout=0.5, **KW)
    path = save_checkpoint(tmp_path / "m.pt", model, CheckpointMeta.for_model(
        model, classes=[f"c{i}" for i in range(19)], colors=[(i, i, i) for i in range(19)]))
    rebuilt = build_model("deeplabv3_mobilenet_v3_large", checkpoint=path, probe_dropout=0.0)
    assert rebuilt.model_kwargs["probe_dropout"] == 0.0
    assert all(p.dropout.p == 0.0 for p in rebuilt.probes)
    loaded, meta = load_checkpoint(path)
    assert meta.model_kwargs["probe_dropout"] == 0.5 and all(p.dropout.p == 0.5 for p in loaded.probes)
    for a, b in zip(loaded.state_dict().values(), rebuilt.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # dropout has no weights: the same checkpoint loads with any value
