"""Node parameters: one validation place, errors that name the parameter, run-time changes."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml

from moose_ros.errors import ConfigError
from moose_ros.resources import config_path
from moose_ros.ros import params as P


def test_defaults_and_shipped_yaml_are_valid() -> None:
    default = P.config_from_values({})
    assert default.cameras == ("",) and default.output_size is None and default.score_range is None
    document = yaml.safe_load(config_path("moose.yaml").read_text())
    assert list(document) == ["/**"]  # applies under any namespace and node name
    shipped = document["/**"]["ros__parameters"]
    config = P.config_from_values(shipped)
    assert set(shipped) <= {spec.name for spec in P.PARAMETERS}
    assert config.threshold is None and math.isnan(shipped["threshold"])  # .nan = the model's threshold
    assert config.input_reliability == "best_effort" and config.input_depth == 1
    assert P.config_from_values(P.config_to_values(config)) == config


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("backend", "cuda", "onnxruntime"),
        ("threads", -1, ">= 0"),
        ("threshold", "high", "finite number"),
        ("threshold", float("inf"), ".nan (unset)"),
        ("overlay_alpha", 1.5, "[0.0, 1.0]"),
        ("colormap", "rainbow", "turbo"),
        ("score_range", [3.0, 1.0], "lo < hi"),
        ("output_size", [480, 0], "both > 0"),
        ("output_size", [480], "two integers"),
        ("input_transport", "ffmpeg", "compressed"),
        ("input_reliability", "sometimes", "best_effort"),
        ("input_depth", 0, ">= 1"),
        ("cameras", ["front", "front"], "distinct"),
        ("cameras", ["bad name"], "letters"),
        ("publish_mask", "yes", "true or false"),
        ("max_pixels", 0, ">= 1"),
        ("diagnostics_period", 0.0, "(0.0"),
    ],
)
def test_bad_values_name_the_parameter(name: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        P.config_from_values({name: value})
    assert f"'{name}'" in str(info.value) and allowed in str(info.value)


def test_unknown_parameter_is_rejected() -> None:
    with pytest.raises(ConfigError, match="'treshold'"):
        P.config_from_values({"treshold": 1.0})


def test_integers_are_fine_for_float_parameters() -> None:
    config = P.config_from_values({"threshold": 3, "score_range": [-12, 0], "cameras": ["a", "b/c"]})
    assert config.threshold == 3.0 and config.score_range == (-12.0, 0.0) and config.cameras == ("a", "b/c")


def test_update_config_only_dynamic() -> None:
    config = P.config_from_values({})
    new = P.update_config(config, {"threshold": -2.5, "colormap": "jet"})
    assert (new.threshold, new.colormap, new.overlay_alpha) == (-2.5, "jet", config.overlay_alpha)
    with pytest.raises(ConfigError, match="cannot change at run time"):
        P.update_config(config, {"backend": "torch"})
    with pytest.raises(ConfigError, match="'overlay_alpha'"):
        P.update_config(config, {"overlay_alpha": -1.0})


def test_resolve_score() -> None:
    assert P.resolve_score(P.config_from_values({}), ("max_logit", "msp")) == "max_logit"
    assert P.resolve_score(P.config_from_values({"score": "msp"}), ("max_logit", "msp")) == "msp"
    with pytest.raises(ConfigError, match="max_logit, msp"):
        P.resolve_score(P.config_from_values({"score": "entropy"}), ("max_logit", "msp"))


def test_resolve_mask_score_follows_roi() -> None:
    gated = ("sml", "entropy", "sml_road", "entropy_road")
    plain = ("sml", "entropy")
    config = P.config_from_values({})  # roi: auto
    assert config.roi == "auto"
    assert P.resolve_mask_score(config, "entropy", gated) == "entropy_road"
    assert P.resolve_mask_score(config, "entropy", plain) == "entropy"
    road = P.config_from_values({"roi": "road"})
    assert P.resolve_mask_score(road, "sml", gated) == "sml_road"
    with pytest.raises(ConfigError, match=r"parameter 'roi' = 'road' is invalid.*no 'sml_road' output"):
        P.resolve_mask_score(road, "sml", plain)
    assert P.resolve_mask_score(P.config_from_values({"roi": "image"}), "sml", gated) == "sml"
    with pytest.raises(ConfigError, match=r"parameter 'roi' = 'lane' is invalid: expected .*auto, image, road"):
        P.config_from_values({"roi": "lane"})


def test_shipped_yaml_readme_and_code_agree_on_every_default() -> None:
    """config/moose.yaml, the README parameter table and PARAMETERS give the same default for every parameter."""
    shipped = yaml.safe_load(config_path("moose.yaml").read_text())["/**"]["ros__parameters"]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \*? ?\| `?([^|`]*)`? \|", readme, flags=re.MULTILINE))
    for spec in P.PARAMETERS:
        if spec.default is None:
            assert spec.name not in shipped and rows[spec.name] == "unset", spec.name
            continue
        assert spec.name in shipped, spec.name
        same = (math.isnan(shipped[spec.name]) if isinstance(spec.default, float) and math.isnan(spec.default)
                else shipped[spec.name] == spec.default)
        assert same, (spec.name, shipped[spec.name], spec.default)
        assert yaml.safe_load(rows[spec.name].replace('""', "''") or "''") == shipped[spec.name] or (
            rows[spec.name] == ".nan" and math.isnan(shipped[spec.name])), (spec.name, rows[spec.name])


def test_operating_point_resolution() -> None:
    extra = {"thresholds": {"max_logit": -2.5}, "score_ranges": {"max_logit": [-9.0, 0.0], "msp": [-1.0, -0.1]}}
    unset = P.config_from_values({})
    assert P.operating_threshold(unset, "max_logit", extra) == (-2.5, "model")
    assert P.operating_threshold(unset, "msp", extra) == (0.0, "fallback")
    assert P.operating_threshold(unset, "max_logit", {}) == (0.0, "fallback")
    assert P.operating_threshold(P.config_from_values({"threshold": -4}), "max_logit", extra) == (-4.0, "parameter")
    assert P.operating_range(unset, "msp", extra) == ((-1.0, -0.1), "model")
    assert P.operating_range(unset, "entropy", extra) == (None, "automatic")
    assert P.operating_range(P.config_from_values({"score_range": [1, 2]}), "msp", extra) == ((1.0, 2.0), "parameter")
    back = P.update_config(P.update_config(unset, {"threshold": 1.0}), {"threshold": math.nan})
    assert back.threshold is None
