"""Every builder builds, runs at a tiny size with the documented shapes and K, and rejects bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

from moose_ros.errors import ConfigError
from moose_ros.model import ARCHITECTURES, build_model, default_model_kwargs
from moose_ros.model import builders as builders_module

H, W = 65, 97


def _feature_size(output_stride: int) -> tuple[int, int]:
    """Each stride-2 stage halves the size rounding up (padding keeps a partial window)."""
    h, w = H, W
    for _ in range(int(math.log2(output_stride))):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


EXPECTED_STRIDE = {
    "deeplabv3_mobilenet_v3_large": 16,
    "deeplabv3_resnet18": 8,
    "deeplabv3_resnet50": 8,
    "deeplabv3_resnet101": 8,
    "deeplabv3plus_resnet50": 4,  # decoder output at the low-level (layer1) resolution
    "deeplabv3plus_resnet101": 4,
    "pspnet_resnet50": 8,
    "pspnet_resnet101": 8,
}


def test_architectures_have_builders() -> None:
    assert tuple(sorted(ARCHITECTURES)) == ARCHITECTURES == tuple(sorted(EXPECTED_STRIDE))
    for name in ARCHITECTURES:
        assert callable(getattr(builders_module, f"moose_{name}"))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_builder_forward_shapes(architecture: str) -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    builder = getattr(builders_module, f"moose_{architecture}")
    model = builder(num_classes=5, probe_width=8)
    assert model.architecture == architecture and model.num_probes == 4 and model.num_classes == 5
    assert not model.training
    with torch.no_grad():
        out = model(torch.randn(1, 3, H, W))
    assert set(out) == {"out", "probes"}
    expected = (1, 5, *_feature_size(EXPECTED_STRIDE[architecture]))
    assert tuple(out["out"].shape) == expected
    assert len(out["probes"]) == 4
    assert all(tuple(p.shape) == expected for p in out["probes"])
    assert all(p.dtype == torch.float32 for p in [out["out"], *out["probes"]])
    # model_kwargs rebuild an identical architecture
    rebuilt = build_model(architecture, **model.model_kwargs)
    assert rebuilt.model_kwargs == model.model_kwargs
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_light_mobilenet_configuration() -> None:
    model = build_model("deeplabv3_mobilenet_v3_large", num_classes=9, output_stride=8, reduced_tail=True,
                        aspp_channels=128, atrous_rates=(4, 8, 12), probe_width=64)
    assert model.model_kwargs["atrous_rates"] == [4, 8, 12] and model.model_kwargs["output_stride"] == 8
    assert model.classifier[0].convs[0][0].in_channels == 480  # reduced tail
    model = model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        out = model(torch.randn(1, 3, H, W).contiguous(memory_format=torch.channels_last))
    assert tuple(out["out"].shape) == (1, 9, *_feature_size(8))


@pytest.mark.parametrize(
    ("architecture", "kwargs", "expected_shape", "num_probes"),
    [
        ("deeplabv3_resnet18", {"output_stride": 16, "atrous_rates": (1, 2)}, _feature_size(16), 3),
        ("deeplabv3plus_resnet50", {"output_stride": 8}, _feature_size(4), 4),
        ("pspnet_resnet50", {"pool_scales": (1, 3), "output_stride": 16}, _feature_size(16), 2),
    ],
)
def test_stride_and_pyramid_options(architecture, kwargs, expected_shape, num_probes) -> None:
    torch.manual_seed(0)
    model = build_model(architecture, num_classes=3, probe_width=8, **kwargs)
    with torch.no_grad():
        out = model(torch.randn(2, 3, H, W))
    assert model.num_probes == len(out["probes"]) == num_probes
    assert tuple(out["out"].shape[2:]) == expected_shape


def test_default_atrous_rates_follow_output_stride() -> None:
    assert build_model("deeplabv3_resnet18", output_stride=8).model_kwargs["atrous_rates"] == [12, 24, 36]
    assert build_model("deeplabv3_resnet18", output_stride=16).model_kwargs["atrous_rates"] == [6, 12, 18]
    assert default_model_kwargs("deeplabv3plus_resnet50")["output_stride"] == 16


@pytest.mark.parametrize(
    ("architecture", "kwargs", "pattern"),
    [
        ("deeplabv3_resnet18", {"probe_depth": -1}, r"probe_depth must be an integer >= 0, got -1"),
        ("deeplabv3_resnet18", {"output_stride": 32}, r"output_stride must be one of \(8, 16\), got 32"),
        ("deeplabv3_resnet18", {"num_classes": 0}, r"num_classes must be an integer >= 1, got 0"),
        ("deeplabv3_resnet18", {"atrous_rates": ()}, r"atrous_rates must be a non-empty sequence"),
        ("deeplabv3_resnet18", {"atrous_rates": (6, 0)}, r"atrous_rates\[1\] must be an integer >= 1, got 0"),
        ("deeplabv3_resnet18", {"probe_width": 2.5}, r"probe_width must be an integer >= 1, got 2.5"),
        ("deeplabv3_mobilenet_v3_large", {"reduced_tail": "yes"}, r"reduced_tail must be True or False"),
        ("pspnet_resnet50", {"pool_scales": [1, -2]}, r"pool_scales\[1\] must be an integer >= 1"),
        ("pspnet_resnet50", {"aspp_channels": 64}, r"unknown argument\(s\) \['aspp_channels'\].*pool_scales"),
        ("deeplabv3_resnet34", {}, r"unknown architecture 'deeplabv3_resnet34'; allowed: .*deeplabv3_resnet18"),
    ],
)
def test_invalid_arguments_name_parameter_and_allowed_values(architecture, kwargs, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_model(architecture, **kwargs)


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_public_builders_come_from_the_one_table(architecture: str) -> None:
    """Every public builder is keyword-only with exactly its architecture's arguments (one table), and refuses
    an argument of another architecture."""
    import inspect

    import moose_ros.model as model_pkg

    builder = getattr(model_pkg, f"moose_{architecture}")
    params = inspect.signature(builder).parameters
    assert list(params) == [*default_model_kwargs(architecture), "freeze_trunk", "checkpoint"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    foreign = "pool_scales" if "pool_scales" not in params else "aspp_channels"
    with pytest.raises(TypeError, match=foreign):
        builder(**{foreign: 3})
