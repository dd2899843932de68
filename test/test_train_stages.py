"""Trainer stages on tiny generated street scenes: what each stage trains and what it must leave untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train_common import TINY_MODEL, make_synth, random_base, snapshot, write_recipe

from moose_ros.model import build_model, load_checkpoint
from moose_ros.train import load_config, train_stage
from moose_ros.train.data import AugmentConfig, SegTrainSet
from moose_ros.train.stages import refit_head, seg_loss_sum


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth"))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _mean_loss(model: torch.nn.Module, data_root: Path, head: str) -> float:
    """Mean pixel cross-entropy of the global head ("out") or of the summed probes on the un-augmented train set."""
    from moose_ros.data.cityscapes import CityscapesDataset

    ds = SegTrainSet(CityscapesDataset(data_root, "train"), AugmentConfig(),
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), seed=0)
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(ds)):
            x, y = ds[(0, i)]
            out = model(x[None])
            heads = out["probes"] if head == "probes" else [out["out"]]
            total += sum(float(seg_loss_sum(h, y[None])) for h in heads)
            count += int((y != 255).sum())
    return total / count


def _split(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> tuple[set[str], set[str]]:
    inside = {k for k in state if k.startswith(prefixes)}
    return inside, set(state) - inside


def test_probes_stage_lowers_probe_loss_and_keeps_trunk_bit_identical(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "run"
    base = random_base(out / "base.pt")
    cfg = load_config(write_recipe(tmp_path / "r.yaml", data_root, probes={"steps": 12, "lr": 0.1}))
    before_model, _ = load_checkpoint(base)
    before = snapshot(before_model)
    loss_before = _mean_loss(before_model, data_root, "probes")

    result = train_stage(cfg, "probes", out, progress=False)

    after_model, meta = load_checkpoint(result.checkpoint)
    after = snapshot(after_model)
    probe_keys, trunk_keys = _split(after, ("probes.",))
    assert trunk_keys and probe_keys
    changed_trunk = [k for k in trunk_keys if not torch.equal(before[k], after[k])]
    assert changed_trunk == [], f"trunk parameters/buffers moved: {changed_trunk[:5]}"
    assert any(not torch.equal(before[k], after[k]) for k in probe_keys if k.endswith("weight"))
    loss_after = _mean_loss(after_model, data_root, "probes")
    assert loss_after < 0.85 * loss_before, (loss_before, loss_after)
    assert result.steps == 12
    val = meta.metrics["probes"]
    assert len(val["probe_miou"]) == after_model.num_probes == 4
    assert 0.0 <= val["moose_miou"] <= 1.0
    assert meta.recipe["stages"]["probes"]["steps"] == 12


def test_probes_stage_takes_the_recipes_probe_shape_over_the_init_checkpoints(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "run"
    base = random_base(out / "base.pt")  # probes of depth 1, width 16
    recipe = write_recipe(tmp_path / "r.yaml", data_root, probes={"steps": 2})
    cfg = load_config(recipe, ["model.kwargs.probe_depth=2", "model.kwargs.probe_width=8"])
    result = train_stage(cfg, "probes", out, progress=False)

    after_model, meta = load_checkpoint(result.checkpoint)
    assert meta.model_kwargs["probe_depth"] == 2 and meta.model_kwargs["probe_width"] == 8
    assert all(p.depth == 2 and p.classifier.in_channels == 8 for p in after_model.probes)
    before = snapshot(load_checkpoint(base)[0])
    after = snapshot(after_model)
    trunk = [k for k in before if not k.startswith("probes.")]
    assert trunk and all(torch.equal(before[k], after[k]) for k in trunk)
    assert after_model(torch.zeros(1, 3, 64, 128))["probes"][0].shape == (1, 19, 4, 8)


def test_refit_retrains_only_the_global_head(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "run"
    base = random_base(out / "base.pt")
    cfg = load_config(write_recipe(tmp_path / "r.yaml", data_root, refit={"steps": 8, "lr": 0.1}))
    before_model, _ = load_checkpoint(base)
    before = snapshot(before_model)
    head_names = {f"classifier.{int(name.split('.')[0]) + 1}.{name.split('.', 1)[1]}"
                  for name in refit_head(before_model).state_dict()}
    loss_before = _mean_loss(before_model, data_root, "out")

    result = train_stage(cfg, "refit", out, progress=False)

    after_model, _ = load_checkpoint(result.checkpoint)
    after = snapshot(after_model)
    assert head_names <= set(after)
    frozen = set(after) - head_names
    moved = [k for k in frozen if not torch.equal(before[k], after[k])]
    assert moved == [], f"refit moved frozen tensors: {moved[:5]}"
    assert all(not torch.equal(before[k], after[k]) for k in head_names if k.endswith("weight"))
    assert _mean_loss(after_model, data_root, "out") < loss_before


def test_base_stage_trains_the_trunk_and_never_touches_probes(tmp_path: Path, data_root: Path) -> None:
    cfg = load_config(write_recipe(tmp_path / "r.yaml", data_root,
                                   base={"steps": 4, "crop": [48, 96], "scale": [0.75, 1.25], "flip": True}))
    result = train_stage(cfg, "base", tmp_path / "run", progress=False)
    model, meta = load_checkpoint(result.checkpoint)
    fresh = snapshot(model)
    assert meta.input_size == (64, 128)  # the scale the network works at (crops keep it), not the crop
    assert "global_miou" in meta.metrics["base"]
    # the probes of a base run are exactly the builder's initial ones: no gradient, no BN statistic update
    torch.manual_seed(0)  # the recipe's seed: the trainer builds the network right after seeding
    init = snapshot(build_model(TINY_MODEL["architecture"], **TINY_MODEL["kwargs"]))
    probe_keys, trunk_keys = _split(fresh, ("probes.",))
    bn_stats = [k for k in probe_keys if k.endswith(("running_mean", "running_var"))]
    assert bn_stats and all(torch.equal(fresh[k], init[k]) for k in bn_stats)
    assert any(not torch.equal(fresh[k], init[k]) for k in trunk_keys if k.endswith("running_mean"))


@pytest.mark.parametrize("stage", ["probes", "refit"])
def test_cached_features_train_the_same_heads_as_full_forward_passes(
    tmp_path: Path, data_root: Path, stage: str
) -> None:
    base = random_base(tmp_path / "base.pt")
    recipe = write_recipe(tmp_path / "r.yaml", data_root, **{stage: {"steps": 3, "lr": 0.1}})
    plain = train_stage(load_config(recipe), stage, tmp_path / "plain", init=base, progress=False)
    cached = train_stage(load_config(recipe, [f"{stage}.cache_features=true"]), stage, tmp_path / "cached",
                         init=base, progress=False)
    a, b = snapshot(plain.model), snapshot(cached.model)
    start = snapshot(load_checkpoint(base)[0])
    trained = [k for k in a if not torch.equal(a[k], start[k])]
    assert trained  # the stage changed something
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=f"{stage}: {k}")


def test_bn_recalibration_sets_trunk_statistics_to_the_images_batch_moments(tmp_path: Path, data_root: Path) -> None:
    from moose_ros.data import open_dataset
    from moose_ros.train.validate import recalibrate_bn

    model, meta = load_checkpoint(random_base(tmp_path / "base.pt"))
    probes_before = {k: v.clone() for k, v in model.probes.state_dict().items()}
    samples = open_dataset("cityscapes", data_root, "train")
    bn = model.classifier[2]  # the global head's BatchNorm
    seen: list[torch.Tensor] = []
    handle = bn.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    used = recalibrate_bn(model, samples, count=4, mean=meta.mean, std=meta.std, batch_size=4)
    handle.remove()
    assert used == 4 and len(seen) == 1
    feats = seen[0]
    torch.testing.assert_close(bn.running_mean, feats.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    n = feats.numel() / feats.shape[1]
    torch.testing.assert_close(bn.running_var, feats.var(dim=(0, 2, 3), unbiased=False) * n / (n - 1),
                               rtol=1e-3, atol=1e-5)
    assert not model.training and all(torch.equal(v, model.probes.state_dict()[k]) for k, v in probes_before.items())


def test_class_weights_follow_median_frequency_balancing() -> None:
    import numpy as np

    from moose_ros.train.stages import class_weights

    labels = [np.array([[0] * 60 + [1] * 30 + [2] * 10 + [255] * 5], np.uint8)]  # frequencies 0.6 / 0.3 / 0.1
    freq = np.array([0.6, 0.3, 0.1])
    want = (0.3 / freq) ** 0.5
    want = want / (freq * want).sum()  # the pixel-weighted mean weight is 1
    got = class_weights(labels, 4, 0.5).numpy()
    np.testing.assert_allclose(got[:3], want, rtol=1e-6)
    assert got[3] == 1.0  # never seen
    assert torch.equal(class_weights(labels, 4, 0.0), torch.ones(4))
    rare = [np.array([[0] * 1000 + [1] * 1000 + [2]], np.uint8)]  # ratio 1000 clipped at 8 before the scaling
    w = class_weights(rare, 3, 1.0).numpy()
    assert w[0] == pytest.approx(w[1]) and w[2] / w[0] == pytest.approx(8.0, rel=1e-6)


def test_weighted_loss_equals_torch_weighted_cross_entropy_and_base_trains_with_it(
    tmp_path: Path, data_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch.nn.functional as F

    logits, labels = torch.randn(2, 3, 4, 5), torch.randint(0, 3, (2, 4, 5))
    labels[0, 0, 0] = 255
    weight = torch.tensor([0.5, 1.0, 2.0])
    want = F.cross_entropy(logits, labels, weight=weight, ignore_index=255, reduction="sum")
    assert float(seg_loss_sum(logits, labels, 255, weight)) == pytest.approx(float(want), rel=1e-6)
    assert float(seg_loss_sum(logits, labels, 255, weight)) != pytest.approx(float(seg_loss_sum(logits, labels)))

    cfg = load_config(write_recipe(tmp_path / "r.yaml", data_root, base={"steps": 2, "class_balance": 0.5}))
    with caplog.at_level("INFO", logger="moose_ros.train.trainer"):
        result = train_stage(cfg, "base", tmp_path / "run", progress=False)
    assert "class weights (class_balance=0.5): road=" in caplog.text
    _, meta = load_checkpoint(result.checkpoint)
    assert meta.recipe["config"]["base"]["class_balance"] == 0.5
