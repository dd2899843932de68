"""torchvision DeepLabV3 weights load into the MOoSe trunk unchanged and give the same global output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large, deeplabv3_resnet50

from moose_ros.errors import CheckpointError
from moose_ros.model import (
    load_torchvision_state_dict,
    moose_deeplabv3_mobilenet_v3_large,
    moose_deeplabv3_resnet50,
)


def _randomise_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Give every BN layer non-trivial statistics and affine parameters (fresh BNs are near identities)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)


@pytest.mark.parametrize(
    ("torchvision_builder", "moose_builder"),
    [
        (deeplabv3_resnet50, moose_deeplabv3_resnet50),
        (deeplabv3_mobilenet_v3_large, moose_deeplabv3_mobilenet_v3_large),
    ],
)
def test_torchvision_weights_give_identical_global_output(torchvision_builder, moose_builder) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    reference = torchvision_builder(weights=None, weights_backbone=None, num_classes=19).eval()
    _randomise_batchnorm(reference, seed=1)
    ours = moose_builder(num_classes=19)
    probes_before = {k: v.clone() for k, v in ours.state_dict().items() if k.startswith("probes.")}

    report = load_torchvision_state_dict(ours, reference.state_dict())

    assert report.missing_keys == () and report.unexpected_keys == ()
    assert set(report.untouched_probe_keys) == set(probes_before)
    for key, value in ours.state_dict().items():
        if key.startswith("probes."):
            assert torch.equal(value, probes_before[key]), key
        else:
            assert torch.equal(value, reference.state_dict()[key]), key
    x = torch.randn(1, 3, 65, 97, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = reference(x)["out"]
        result = ours(x)
    upsampled = F.interpolate(result["out"], size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert expected.abs().max() > 0.1  # a non-degenerate output
    assert torch.equal(upsampled, expected), (upsampled - expected).abs().max()
    assert len(result["probes"]) == ours.num_probes == 4


def test_aux_classifier_is_ignored_and_reported() -> None:
    torch.manual_seed(0)
    reference = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=19, aux_loss=True)
    ours = moose_deeplabv3_mobilenet_v3_large(num_classes=19)
    report = load_torchvision_state_dict(ours, reference.state_dict())
    assert report.ignored_keys and all(k.startswith("aux_classifier.") for k in report.ignored_keys)
    assert torch.equal(ours.state_dict()["classifier.4.weight"], reference.state_dict()["classifier.4.weight"])


def test_mismatching_torchvision_weights_are_refused_with_names_and_shapes() -> None:
    reference = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=19)
    narrow = moose_deeplabv3_mobilenet_v3_large(num_classes=19, aspp_channels=128)
    with pytest.raises(CheckpointError, match=r"classifier\.0\..*256.*128|classifier\.0\..*128.*256"):
        load_torchvision_state_dict(narrow, reference.state_dict())
    state = dict(reference.state_dict())
    del state["classifier.4.bias"]
    state["extra.weight"] = torch.zeros(1)
    ours = moose_deeplabv3_mobilenet_v3_large(num_classes=19)
    with pytest.raises(CheckpointError, match=r"classifier\.4\.bias.*extra\.weight"):
        load_torchvision_state_dict(ours, state)
    report = load_torchvision_state_dict(ours, state, strict=False)
    assert report.missing_keys == ("classifier.4.bias",) and report.unexpected_keys == ("extra.weight",)
