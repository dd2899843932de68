"""Score variants (<score>[+bs][+road]) and the evaluation core's regions: against the graph's own post-processing
and direct metric computations on the same maps."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from moose_ros.errors import ConfigError
from moose_ros.eval.core import evaluate_ood, region_labels
from moose_ros.eval.variants import ABLATION_VARIANTS, ScoreVariant, parse_variants, variant_maps
from moose_ros.export.postprocess import BoundarySuppression, SmlStats, postprocess
from moose_ros.metrics import OodMetrics


def _heads(seed: int = 0, m: int = 3, c: int = 5, h: int = 12, w: int = 20) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, c, h, w, generator=gen) * 2.0
    return [base + 0.7 * torch.randn(1, c, h, w, generator=gen) for _ in range(m)]


def test_parse_names_and_errors() -> None:
    v = ScoreVariant.parse("sml+bs+road")
    assert (v.score, v.boundary, v.road, v.name, v.output) == ("sml", True, True, "sml+bs+road", "sml_road")
    assert ScoreVariant.parse("entropy").output == "entropy"
    for bad in ("nope", "sml+bs+bs", "entropy+blur", ""):
        with pytest.raises(ConfigError, match="score variant"):
            ScoreVariant.parse(bad)
    with pytest.raises(ConfigError, match="each at most once"):
        parse_variants(["sml", "sml"])
    assert [x.name for x in ABLATION_VARIANTS][:3] == ["max_logit", "entropy", "msp"]


def test_variant_maps_are_the_graph_outputs_of_the_same_options() -> None:
    heads = _heads()
    size, work = (48, 80), (24, 40)  # heads at 12x20
    sml = SmlStats(mean=torch.linspace(1.0, 3.0, 5), std=torch.linspace(0.5, 1.5, 5))
    bs = BoundarySuppression()
    variants = parse_variants(["max_logit", "sml", "sml+bs", "sml+bs+road", "entropy+road"])
    labels, maps = variant_maps(heads, size, variants, input_hw=work, sml=sml, boundary=bs, road_classes=[0, 1])
    # the deployed graph's default: scores at the heads' resolution, labels at the network input size
    plain_labels, plain = postprocess(heads, size, scores=("max_logit", "sml", "entropy"), work_size=work,
                                      score_size="feature", sml=sml, road_classes=[0, 1])
    _, boosted = postprocess(heads, size, scores=("sml",), work_size=work, score_size="feature", sml=sml,
                             boundary=bs, road_classes=[0, 1])
    assert torch.equal(labels, plain_labels)
    assert torch.equal(maps["max_logit"], plain["max_logit"]) and torch.equal(maps["sml"], plain["sml"])
    assert torch.equal(maps["entropy+road"], plain["entropy_road"])
    assert torch.equal(maps["sml+bs"], boosted["sml"]) and torch.equal(maps["sml+bs+road"], boosted["sml_road"])
    assert not torch.equal(maps["sml+bs"], maps["sml"])  # the booster changes the map
    assert list(maps) == [v.name for v in variants]
    with pytest.raises(ConfigError, match="road_classes"):
        variant_maps(heads, size, parse_variants(["entropy+road"]), input_hw=work)
    # another resolution of the graph: the same as postprocess at that resolution
    _, at_input = variant_maps(heads, size, parse_variants(["entropy"]), input_hw=work, resolution="input")
    _, want = postprocess(heads, size, scores=("entropy",), work_size=work)
    assert torch.equal(at_input["entropy"], want["entropy"])
    assert not torch.allclose(at_input["entropy"], plain["entropy"], atol=1e-3)


def test_evaluation_core_regions_and_protocols_equal_direct_metrics() -> None:
    rng = np.random.default_rng(4)
    samples = []
    for i in range(3):
        ood = np.zeros((16, 24), np.uint8)
        ood[:4] = 255  # off the road: void in the layout, in-distribution for the whole image
        ood[8 + i: 11 + i, 5:9] = 1
        samples.append(SimpleNamespace(image=np.full((16, 24, 3), i, np.uint8), ood=ood, name=f"f{i}"))
    maps = [rng.normal(size=(16, 24)).astype(np.float32) + 2.0 * (s.ood == 1) for s in samples]
    by_image = {int(s.image[0, 0, 0]): m for s, m in zip(samples, maps, strict=True)}
    result = evaluate_ood(lambda image: {"M/s": by_image[int(image[0, 0, 0])]}, samples,
                          protocols=("pooled", "per_image"), regions=("layout", "image"), mode="exact",
                          component_keys=(), progress=False)
    assert set(result.views) == {(r, p) for r in ("layout", "image") for p in ("pooled", "per_image")}
    for (region, protocol), by_key in result.views.items():
        direct = OodMetrics(protocol, "exact")
        for s, m in zip(samples, maps, strict=True):
            direct.update(m, region_labels(s.ood, region))
        expected = direct.compute()
        for key in ("aupr", "fpr95", "auroc", "num_pixels"):
            assert by_key["M/s"][key] == pytest.approx(expected[key]), (region, protocol, key)
    assert result.views[("image", "pooled")]["M/s"]["num_pixels"] > result.views[("layout", "pooled")]["M/s"][
        "num_pixels"]
    assert result.metrics["M/s"]["aupr"] == result.views[("layout", "pooled")]["M/s"]["aupr"]
    with pytest.raises(ConfigError, match="region 'sky'"):
        evaluate_ood(lambda image: {"M/s": maps[0]}, samples, regions=("sky",), progress=False)
