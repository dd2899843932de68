"""A halted run resumed from its checkpoint ends exactly where an uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import torch
from test_train_common import make_synth, random_base, write_recipe

from moose_ros.model import load_checkpoint
from moose_ros.train import load_config, train_stage


def test_resume_continues_at_the_saved_step_with_identical_weights(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = make_synth(tmp_path / "synth")
    base = random_base(tmp_path / "base.pt")
    # momentum SGD + poly schedule: a resume that lost the optimizer or scheduler state would diverge
    cfg = load_config(write_recipe(tmp_path / "r.yaml", data, probes={"steps": 5, "lr": 0.1, "val_every": 0}))

    full = train_stage(cfg, "probes", tmp_path / "full", init=base, progress=False)

    halted = train_stage(cfg, "probes", tmp_path / "cut", init=base, progress=False, halt_at=2)
    assert halted.steps == 2
    state = torch.load(tmp_path / "cut" / "probes_last.state.pt", weights_only=True)
    assert state["step"] == 2
    assert not (tmp_path / "cut" / "probes.pt").exists()  # no final result yet

    resumed = train_stage(cfg, "probes", tmp_path / "cut", resume=tmp_path / "cut" / "probes_last.pt",
                          progress=False)
    assert resumed.steps == 5
    a, _ = load_checkpoint(tmp_path / "full" / "probes.pt")
    b, meta = load_checkpoint(tmp_path / "cut" / "probes.pt")
    assert meta.recipe["stages"]["probes"]["steps"] == 5
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(y, x, rtol=0, atol=1e-6, msg=f"{k} differs after resume")
    # the weights really moved after the halt: the resumed run did the remaining 3 steps
    c, _ = load_checkpoint(tmp_path / "cut" / "probes_last.pt")
    torch.testing.assert_close(c.probes[0].classifier.weight, b.probes[0].classifier.weight)
    assert full.steps == 5
