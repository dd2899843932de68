"""`moose train` refuses bad options and recipes before any work (issue rows 1-4 and `train --out FILE` of row 7):
exit 2, one line naming the key, the value and what is allowed, and no OUT directory; plus a bounded fuzz of the
recipe loader that lets only ConfigError escape."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from test_bad_input_common import assert_refused, listing, moose, write_ood_layouts

from moose_ros.errors import ConfigError, MooseError
from moose_ros.train.config import (
    DATA_RULES,
    MODEL_RULES,
    STAGE_RULES,
    DataConfig,
    ModelConfig,
    StageConfig,
    config_from_dict,
    load_config,
)


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a real (tiny) dataset and a valid recipe ``ok.yaml`` reading it."""
    base = tmp_path_factory.mktemp("bad_input_train")
    root = write_ood_layouts(base / "data")
    raw = {"seed": 0, "data": {"kind": "lostandfound", "root": str(root), "train_split": "test", "val_split": "test"},
           "base": {"steps": 2, "batch_size": 1, "lr": 0.01, "flip": False, "log_every": 1}}
    (base / "ok.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return base


def _recipe(recipe_dir: Path, tmp_path: Path, **base: Any) -> Path:
    raw = yaml.safe_load((recipe_dir / "ok.yaml").read_text(encoding="utf-8"))
    raw["base"].update(base)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _train_refused(tmp_path: Path, recipe: Path, extra: list[str], *words: str) -> None:
    before = listing(tmp_path)
    proc = moose(["train", "--config", str(recipe), "--stage", "base", "--out", "OUT", "--no-progress", *extra],
                 tmp_path)
    assert_refused(proc, *words)
    assert not (tmp_path / "OUT").exists(), "a refused run created OUT"
    assert listing(tmp_path) == before


@pytest.mark.parametrize("halt_at", ["0", "-1"])
def test_halt_at_below_one_is_refused(recipe_dir: Path, tmp_path: Path, halt_at: str) -> None:
    """Row 1: --halt-at 0 used to report "1 steps -> OUT/base.pt" and leave OUT empty."""
    _train_refused(tmp_path, recipe_dir / "ok.yaml", ["--halt-at", halt_at], "--halt-at", f"got {halt_at}")


@pytest.mark.parametrize(
    ("base", "extra", "words"),
    [
        ({"steps": "ten"}, [], ("base.steps='ten'", "an integer >= 1")),  # row 2: wrong type in the file
        ({}, ["--set", "base.steps=abc"], ("base.steps='abc'", "an integer")),  # row 2: wrong type in --set
        ({}, ["--set", "base.lr.x=1"], ("--set base.lr.x=1", "'base.lr' is a value, not a section")),  # row 2
        ({"steps": 2.5}, [], ("base.steps=2.5", "an integer >= 1")),  # row 3: left an empty OUT
        ({"flip": "no"}, [], ("base.flip='no'", "true or false")),  # row 4: "no" counted as true
    ],
)
def test_bad_recipe_values_stop_the_cli(recipe_dir: Path, tmp_path: Path, base: dict, extra: list[str],
                                        words: tuple[str, ...]) -> None:
    """Rows 2-4 through the real CLI: one line naming the recipe key, the value and what it accepts."""
    _train_refused(tmp_path, _recipe(recipe_dir, tmp_path, **base), extra, *words)


def test_out_that_is_a_file_is_refused(recipe_dir: Path, tmp_path: Path) -> None:
    """Row 7: `train --out FILE` (and a path under a file) names the option and the file."""
    (tmp_path / "FILE").write_text("not a directory")
    for out, words in (("FILE", ("--out FILE", "existing file")), ("FILE/run", ("is a file, not a directory",))):
        proc = moose(["train", "--config", str(recipe_dir / "ok.yaml"), "--out", out], tmp_path)
        assert_refused(proc, *words)
    assert (tmp_path / "FILE").read_text() == "not a directory"
    assert listing(tmp_path) == ["FILE"]


def test_missing_dataset_is_refused_before_out_exists(recipe_dir: Path, tmp_path: Path) -> None:
    """A wrong data root stops the run with the reader's message, and OUT is never created."""
    _train_refused(tmp_path, recipe_dir / "ok.yaml", ["--data", str(tmp_path / "nowhere")], "nowhere")


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ('base.lr="0.01"', "base.lr='0.01': expected a number > 0"),  # row 2
        ('base.batch_size="2"', "base.batch_size='2': expected an integer >= 1"),  # row 2
        ("base.log_every=0", "base.log_every=0: expected an integer >= 1"),  # row 3
        ("base.weight_decay=-5", "base.weight_decay=-5: expected a number >= 0"),  # row 3
        ("base.workers=-1", "base.workers=-1: expected an integer >= 0"),  # row 3
        ("probes.val_every=-2", "probes.val_every=-2: expected an integer >= 0"),  # row 4
        ("refit.save_every=-1", "refit.save_every=-1: expected an integer >= 0"),  # row 4
        ("base.warmup_steps=-3", "base.warmup_steps=-3: expected an integer >= 0"),  # row 4
        ("base.cache_features=yes please", "base.cache_features='yes please': expected true or false"),
        ("base.momentum=1.5", "base.momentum=1.5: expected a number >= 0 and < 1"),
        ("base.crop=[0, 4]", "base.crop=[0, 4]: expected a list [H, W] of two integers each >= 1"),
        ("base.lr=.nan", "base.lr=nan: expected a number > 0"),
        ("data.kind=pictures", "data.kind='pictures': expected a dataset kind"),
        ("data.val_limit=0", "data.val_limit=0: expected an integer >= 1, or null"),
        ("model.kwargs=[1]", "model.kwargs=[1]: expected a mapping"),
        ("seed=-1", "seed=-1: expected an integer >= 0"),
        ("seed=true", "seed=True: expected an integer >= 0"),
        ("base.steps.x=1", "'base.steps' is a value, not a section"),
        ("base.stepz=1", "unknown key 'base.stepz'"),
        ("base=1", "'base' is a section"),
        ("base..lr=1", "unknown key 'base.'"),
    ],
)
def test_every_key_is_checked_for_type_and_range(override: str, words: str) -> None:
    """Rows 2-4 key by key on the real loader (pure parsing): ConfigError naming key, value and what is allowed."""
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert words in str(info.value)


def test_rules_cover_every_recipe_field() -> None:
    """No recipe key escapes validation: each dataclass field has a rule and each rule a field."""
    for cls, rules in ((StageConfig, STAGE_RULES), (DataConfig, DATA_RULES), (ModelConfig, MODEL_RULES)):
        assert {f.name for f in dataclasses.fields(cls)} == set(rules), cls.__name__


def test_default_and_shipped_values_pass_the_rules() -> None:
    """The rules accept what the package itself uses (the defaults) and the boundary values."""
    cfg = load_config(None, ["base.steps=1", "base.warmup_steps=0", "base.momentum=0", "base.crop=null",
                             "base.patience=null", "base.flip=false", "data.kind=fishyscapes", "seed=0"])
    assert cfg.base.steps == 1 and cfg.base.flip is False and cfg.data.kind == "fishyscapes"


_VALUES: list[Any] = [0, 1, 2, -1, 2.5, 1e-3, -0.5, float("inf"), True, False, None, "", "no", "abc", "0.01", [1, 2],
                      [0, 5], [2.5, 3], [1, 2, 3], ["a", "b"], {"x": 1}, {1: 2}, "sgd", "adamw", "off", "cityscapes"]


def test_fuzz_recipe_loader_raises_only_config_errors() -> None:
    """Bounded fuzz (seeded, 600 recipes): random values for random keys, random sections and random dotted --set
    paths. Loading either succeeds with values of the declared types or raises ConfigError; nothing else escapes."""
    rng = np.random.default_rng(12)
    sections = {"base": STAGE_RULES, "probes": STAGE_RULES, "refit": STAGE_RULES, "data": DATA_RULES,
                "model": MODEL_RULES}
    accepted = refused = 0
    for _ in range(600):
        raw: dict[str, Any] = {}
        for _ in range(int(rng.integers(1, 4))):
            section = str(rng.choice([*sections, "seed", "bogus"]))
            value = _VALUES[int(rng.integers(len(_VALUES)))]
            if section in sections and rng.random() < 0.9:
                key = str(rng.choice(sorted(sections[section])))
                if not isinstance(raw.get(section), dict):
                    raw[section] = {}
                raw[section][key] = value
            else:
                raw[section] = value
        overrides = [f"{'.'.join(rng.choice(['base', 'lr', 'x', 'kwargs', 'model', ''], size=3))}=1"] \
            if rng.random() < 0.2 else []
        try:
            cfg = config_from_dict(raw, source="fuzz") if not overrides else load_config(None, overrides)
        except ConfigError:
            refused += 1
            continue
        except MooseError as err:  # a project error of the wrong class still fails the test
            pytest.fail(f"{raw} {overrides}: {type(err).__name__}: {err}")
        accepted += 1
        for name in ("base", "probes", "refit"):
            stage = cfg.stage(name)
            assert isinstance(stage.steps, int) and stage.steps >= 1 and isinstance(stage.flip, bool)
            assert isinstance(stage.lr, (int, float)) and stage.lr > 0
    assert accepted > 0 and refused > 0
