"""Probes: distinct weights per depth block, gradients stop at the probe input, a frozen trunk never moves."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moose_ros.model import Probe, build_model

# Tiny configurations of one architecture per family (the trunk code paths differ per family).
FAMILIES = {
    "deeplabv3_resnet18": {"aspp_channels": 16, "atrous_rates": (1, 2, 3)},
    "deeplabv3plus_resnet50": {"aspp_channels": 16, "atrous_rates": (1, 2, 3), "decoder_channels": 16},
    "pspnet_resnet50": {"pyramid_channels": 16},
}


def _trunk_state(model) -> dict[str, torch.Tensor]:
    """Every trunk parameter and buffer (BN running_mean/var/num_batches_tracked), cloned."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("probes.")}


@pytest.mark.parametrize("architecture", sorted(FAMILIES))
def test_probe_step_moves_only_probes(architecture: str) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = build_model(architecture, num_classes=3, probe_width=8, probe_depth=2, **FAMILIES[architecture])
    model.train_probes_only()
    model.train()  # must not put the trunk back into training mode
    assert all(not m.training for _, trunk in model.trunk_modules() for m in trunk.modules())
    assert all(m.training for m in model.probes.modules())
    assert not any(p.requires_grad for p in model.trunk_parameters())
    trunk_before = _trunk_state(model)
    probes_before = [p.detach().clone() for p in model.probe_parameters()]
    probe_bn_before = model.probes[0].project[1].running_mean.clone()

    optimizer = torch.optim.SGD(model.probe_parameters(), lr=0.1)
    x = torch.randn(2, 3, 32, 48)
    out = model(x)
    target = torch.randint(0, 3, out["probes"][0].shape[:1] + out["probes"][0].shape[2:])
    loss = sum(F.cross_entropy(logits, target) for logits in out["probes"])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    assert all(p.grad is None for p in model.trunk_parameters())
    for before, after in zip(probes_before, model.probe_parameters(), strict=True):
        assert not torch.equal(before, after)
    for key, value in model.state_dict().items():
        if not key.startswith("probes."):
            assert torch.equal(value, trunk_before[key]), key
    assert not torch.equal(probe_bn_before, model.probes[0].project[1].running_mean)  # probes do train


def test_probe_gradients_stop_at_probe_input_even_with_trainable_trunk() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv3_resnet18", num_classes=3, probe_width=8, **FAMILIES["deeplabv3_resnet18"])
    model.train()
    out = model(torch.randn(2, 3, 32, 48))
    sum(p.sum() for p in out["probes"]).backward()
    assert all(p.grad is None for p in model.trunk_parameters())
    assert all(p.grad is not None for p in model.probe_parameters())
    out = model(torch.randn(2, 3, 32, 48))
    out["out"].sum().backward()
    assert all(p.grad is not None for p in model.trunk_parameters())


def test_unfreeze_restores_training() -> None:
    model = build_model("deeplabv3_resnet18", num_classes=3, **FAMILIES["deeplabv3_resnet18"], freeze_trunk=True)
    assert model.trunk_frozen and not any(p.requires_grad for p in model.trunk_parameters())
    model.unfreeze_trunk().train()
    assert model.backbone.training and all(p.requires_grad for p in model.trunk_parameters())
    # control for the freezing test: an unfrozen trunk in training mode does move its BN statistics
    before = _trunk_state(model)
    model(torch.randn(2, 3, 32, 48))
    assert not torch.equal(before["backbone.bn1.running_mean"], model.backbone.bn1.running_mean)


def test_depth_three_blocks_are_distinct() -> None:
    torch.manual_seed(0)
    probe = Probe(12, 4, width=8, depth=3)
    convs = [block[0] for block in probe.blocks]
    assert probe.depth == 3 and len(convs) == 3
    assert len({id(c) for c in convs}) == 3 and len({id(c.weight) for c in convs}) == 3
    assert len({c.weight.data_ptr() for c in convs}) == 3
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(convs[i].weight, convs[j].weight)
    # a gradient step on one block leaves the others alone (no hidden sharing)
    before = [c.weight.detach().clone() for c in convs]
    with torch.no_grad():
        convs[1].weight.add_(1.0)
    assert torch.equal(convs[0].weight, before[0]) and torch.equal(convs[2].weight, before[2])
    assert probe(torch.randn(1, 12, 5, 6)).shape == (1, 4, 5, 6)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in probe.modules()) == 5  # project + 3 blocks + classifier


def test_depth_zero_probe_is_projection_and_classifier() -> None:
    probe = Probe(12, 4, width=8, depth=0)
    assert probe.depth == 0
    assert [m.kernel_size for m in probe.modules() if isinstance(m, torch.nn.Conv2d)] == [(1, 1), (1, 1)]


def test_cached_probe_inputs_reproduce_forward() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv3_resnet18", num_classes=3, probe_width=8, **FAMILIES["deeplabv3_resnet18"])
    model.train_probes_only()
    x = torch.randn(2, 3, 32, 48)
    cached = model.probe_inputs(x)
    assert [c.shape[1] for c in cached] == [2 * 16] * 4 and not any(c.requires_grad for c in cached)
    model.eval()
    with torch.no_grad():
        direct = model(x)["probes"]
        from_cache = model.run_probes(cached)
    assert all(torch.equal(a, b) for a, b in zip(direct, from_cache, strict=True))
    with pytest.raises(ValueError, match="3 probe inputs given for 4 probes"):
        model.run_probes(cached[:3])
