"""Two gloo ranks (torchrun, CPU) train the same probes as one process with the same global batch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from test_train_common import PYTHON, child_env, free_port, make_synth, random_base, write_recipe

from moose_ros.model import load_checkpoint


@pytest.mark.slow
def test_two_rank_gloo_ddp_matches_single_process(tmp_path: Path) -> None:
    data = make_synth(tmp_path / "synth")
    base = random_base(tmp_path / "base.pt")
    # global batch 4: two ranks x 2 images, or one process x 2 accumulation steps of 2 images
    recipe = write_recipe(tmp_path / "r.yaml", data, probes={"steps": 3, "lr": 0.1, "val_every": 0})
    # dropout masks come from each rank's own random stream: exact equality holds only without dropout
    common = ["--config", str(recipe), "--stage", "probes", "--init", str(base), "--device", "cpu",
              "--threads", "1", "--no-progress", "--set", "model.kwargs.probe_dropout=0.0"]
    single = subprocess.run(
        [PYTHON, "-m", "moose_ros.train", *common, "--out", str(tmp_path / "single"), "--set", "probes.accum=2"],
        env=child_env(), capture_output=True, text=True, timeout=120,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = subprocess.run(
        [PYTHON, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1",
         f"--master_port={free_port()}", "-m", "moose_ros.train", *common, "--out", str(tmp_path / "ddp")],
        env=child_env(), capture_output=True, text=True, timeout=180,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    one, _ = load_checkpoint(tmp_path / "single" / "probes.pt")
    two, meta = load_checkpoint(tmp_path / "ddp" / "probes.pt")
    start, _ = load_checkpoint(base)
    assert meta.recipe["stages"]["probes"]["world_size"] == 2
    assert meta.model_kwargs["probe_dropout"] == 0.0  # the recipe's training-only value reached the network
    names = [n for n, _ in one.probes.named_parameters()]
    p1, p2, p0 = (dict(m.probes.named_parameters()) for m in (one, two, start))
    moved = max(float((p1[n] - p0[n]).detach().abs().max()) for n in names)
    assert moved > 1e-3  # the probes really trained
    for n in names:
        torch.testing.assert_close(p2[n], p1[n], rtol=1e-4, atol=1e-5, msg=f"probe parameter {n}")
    # and the trunk is identical everywhere
    for (k, a), b in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        if not k.startswith("probes."):
            assert torch.equal(a, b), k
