"""Training recipes (YAML + overrides) and the sharded batch sampler (pure, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moose_ros.errors import ConfigError
from moose_ros.train.config import load_config
from moose_ros.train.data import ShardedBatchSampler

REPO = Path(__file__).resolve().parents[1]


def test_overrides_parse_yaml_values_and_reach_nested_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("seed: 3\nbase: {lr: 0.1, crop: [64, 128]}\nmodel: {kwargs: {probe_depth: 1}}\n")
    cfg = load_config(path, ["base.lr=0.02", "probes.crop=[32, 64]", "model.kwargs.probe_depth=3", "seed=7"])
    assert cfg.seed == 7
    assert cfg.base.lr == pytest.approx(0.02)
    assert cfg.base.crop == (64, 128)
    assert cfg.probes.crop == (32, 64)
    assert cfg.model.kwargs["probe_depth"] == 3
    assert cfg.to_dict()["probes"]["crop"] == [32, 64]


@pytest.mark.parametrize(
    ("override", "words"),
    [("base.optimiser=sgd", "optimiser"), ("probes.optimizer=rmsprop", "rmsprop"), ("refit.steps=0", "steps"),
     ("base.scale=[2, 1]", "scale"), ("nonsense", "key=value"), ("trainer.x=1", "trainer")],
)
def test_bad_recipes_name_the_key(override: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(None, [override])


def test_shipped_recipes_load() -> None:
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.model.architecture


def _keys(**kw: int) -> list[list[tuple[int, int]]]:
    return list(ShardedBatchSampler(10, 4, total_steps=5, seed=1, **kw))


def test_two_ranks_see_the_micro_batches_of_one_rank_with_two_accumulation_steps() -> None:
    single = _keys(world_size=1, accum=2)
    rank0 = _keys(world_size=2, rank=0)
    rank1 = _keys(world_size=2, rank=1)
    assert len(single) == 10 and len(rank0) == len(rank1) == 5
    assert single[0::2] == rank0 and single[1::2] == rank1
    steps = [single[2 * s] + single[2 * s + 1] for s in range(5)]
    for s, batch in enumerate(steps):
        idx = [i for _, i in batch]
        assert len(set(idx)) == 4  # no repeats inside a global batch
        assert all(e == s // 2 for e, _ in batch)  # 10 images / batch 4 = 2 steps per epoch
    assert _keys(world_size=1, accum=2, start_step=3) == single[6:]


def test_batch_that_does_not_divide_is_rejected() -> None:
    with pytest.raises(ConfigError, match="divisible"):
        ShardedBatchSampler(10, 4, total_steps=1, seed=0, world_size=3)
