"""`moose import` as a user runs it: the authors' two release layouts -> checkpoint -> `moose export` -> ONNX
Runtime; a source without probes -> fresh probes that `moose train --stage probes --init` accepts; and every bad
input refused with one line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_bad_input_common import REPO, Exploit, assert_refused, listing, moose
from test_import_parity import write_source

from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.model import load_checkpoint


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated files in the release's two layouts, VainF's DeepLabV3 and a torchvision-style classifier."""
    base = tmp_path_factory.mktemp("import_sources")
    files = {name: base / f"{name}.pth" for name in ("release_v3", "release_v3plus", "vainf_v3")}
    for name, path in files.items():
        write_source(name, path)
    return files


def _ok(proc) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("layout", ["release_v3", "release_v3plus"])
def test_release_import_export_run(sources: dict[str, Path], tmp_path: Path, layout: str) -> None:
    out = _ok(moose(["import", str(sources[layout]), "-o", "release.pt"], tmp_path))
    assert "format: moose-eccv2022 (detected" in out and "nn.DataParallel 'module.' prefix stripped" in out
    if layout == "release_v3":
        assert "architecture: deeplabv3_resnet50 (detected" in out and "3/4/6/3 bottleneck blocks" in out
        assert "output stride: 8 (default of moose-eccv2022); atrous rates 12/24/36" in out
        assert "normalisation: none" in out and "classes: 13 = streethazards" in out and "unlabeled, building" in out
    else:
        assert "architecture: deeplabv3plus_resnet101 (detected" in out and "3/4/23/3 bottleneck blocks" in out
        assert "output stride: 16 (default of moose-eccv2022); atrous rates 6/12/18" in out
        assert "normalisation: imagenet" in out and "classes: 19 = cityscapes" in out
        assert "ignored: 14 tensor(s) with no counterpart, e.g. classifier.probes.4." in out  # the unused 5th probe
    assert "probes: 4 imported (width 256, depth 1)" in out and "next: moose export" in out

    _ok(moose(["export", "release.pt", "-o", "release.onnx", "--input-size", "native", "--score", "max_logit",
               "--score", "entropy", "--no-tensorrt-check"], tmp_path))
    backend = OnnxRuntimeBackend(tmp_path / "release.onnx", threads=2)
    assert backend.meta.classes[0] == ("unlabeled" if layout == "release_v3" else "road")
    assert backend.meta.mean == ((0.0, 0.0, 0.0) if layout == "release_v3" else (0.485, 0.456, 0.406))
    result = backend.infer(np.random.default_rng(1).integers(0, 256, (1, 48, 80, 3), dtype=np.uint8))
    assert result.labels.shape == (1, 48, 80) and np.isfinite(result.anomaly).all()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".ros")) == ["release.onnx",
                                                                                           "release.pt"]


def test_vainf_gets_fresh_probes_that_train(sources: dict[str, Path], tmp_path: Path) -> None:
    """VainF's DeepLabV3 has no probes: they are fresh and `moose train --stage probes --init` trains them."""
    named = tmp_path / "best_deeplabv3_resnet50_cityscapes_os8.pth"  # VainF names the output stride
    named.symlink_to(sources["vainf_v3"])
    out = _ok(moose(["import", named.name, "-o", "city.pt"], tmp_path))
    assert "format: vainf (detected" in out and "'model_state' entry" in out
    assert "output stride: 8 (from the file name 'best_deeplabv3_resnet50_cityscapes_os8.pth'); atrous rates " \
        "12/24/36" in out
    assert "probes: 4 fresh, untrained" in out and "moose train" in out
    _, meta = load_checkpoint(tmp_path / "city.pt")
    assert meta.probe_config["trained"] is False and meta.recipe["import"]["format"] == "vainf"

    from moose_ros.data.synth import write_synthstreet

    for split in ("train", "val"):
        write_synthstreet(tmp_path / "city", split=split, count=2, seed=1, height=64, width=128)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((REPO / "configs" / "cityscapes_probes.yaml").read_text())
    args = ["train", "--config", str(recipe), "--stage", "probes", "--init", "city.pt", "--data", "city", "--out",
            "run", "--set", "probes.steps=2", "--set", "probes.batch_size=1", "--set", "probes.crop=[64, 64]",
            "--set", "probes.val_every=2", "--set", "data.val_limit=1", "--threads", "2", "--no-progress"]
    _ok(moose(args, tmp_path, timeout=600))
    model, trained = load_checkpoint(tmp_path / "run" / "probes.pt")
    start, _ = load_checkpoint(tmp_path / "city.pt")
    assert trained.architecture == "deeplabv3_resnet50" and trained.mean == meta.mean
    moved = [k for k, v in model.state_dict().items() if not torch.equal(v, start.state_dict()[k])]
    assert moved and all(k.startswith("probes.") for k in moved), moved[:5]


def _write_bad(tmp: Path, kind: str, sources: dict[str, Path]) -> Path:
    path = tmp / f"{kind}.pth"
    if kind == "pickled_code":
        torch.save({"model_state_dict": {"x": torch.zeros(1)}, "hook": Exploit()}, path)
    elif kind == "truncated":
        data = sources["release_v3"].read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "not_torch":
        path.write_text("road,car\n")
    elif kind == "classification_net":
        torch.save({"model_state": {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 2048)}},
                   path)
    elif kind == "no_state_dict":
        torch.save({"epoch": 3, "notes": "hello"}, path)
    elif kind == "moose_checkpoint":
        return REPO / "models" / "moose_synthstreet.pt"
    return path


@pytest.mark.parametrize(("kind", "words"), [
    ("pickled_code", ("refused to load", "weights_only")),
    ("truncated", ("not a readable torch file", "truncated")),
    ("not_torch", ("not a torch checkpoint",)),
    ("classification_net", ("no DeepLabV3, DeepLabV3+ or PSPNet head found",)),
    ("no_state_dict", ("no state dict found", "'model_state_dict'")),
    ("moose_checkpoint", ("already a moose_ros checkpoint",)),
])
def test_bad_files_refused(sources: dict[str, Path], tmp_path: Path, kind: str, words: tuple[str, ...]) -> None:
    src = _write_bad(tmp_path, kind, sources)
    before = listing(tmp_path)
    assert_refused(moose(["import", str(src), "-o", "out.pt"], tmp_path), *words)
    assert listing(tmp_path) == before and not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(("extra", "words"), [
    (["--classes", "cityscapes"], ("'classifier.4.weight' has shape (13, 256, 1, 1) in the file",
                                   "needs (19, 256, 1, 1)", "19 classes (cityscapes)")),
    (["--arch", "deeplabv3_resnet101"], ("lacks", "backbone.layer3.6.", "the weights look like deeplabv3_resnet50")),
    (["--arch", "deeplabv3plus_resnet50"], ("have no place in it", "deeplabv3_resnet50")),
    (["--format", "vainf"], ("--format vainf", "moose-eccv2022 layout", "classifier.probes.")),
    (["--classes", "mars_rover"], ("--classes mars_rover", "cityscapes, streethazards")),
    (["-o", "existing_dir"], ("-o existing_dir", "existing directory")),
    (["-o", "a_file/x.pt"], ("a_file is a file, not a directory",)),
    (["-o", "/proc/1/x.pt"], ("-o /proc/1/x.pt", "cannot write the checkpoint")),
])
def test_bad_options_refused(sources: dict[str, Path], tmp_path: Path, extra: list[str],
                             words: tuple[str, ...]) -> None:
    (tmp_path / "existing_dir").mkdir()
    (tmp_path / "a_file").write_text("x")
    args = ["import", str(sources["release_v3"]), *(extra if extra[0] == "-o" else ["-o", "out.pt", *extra])]
    before = listing(tmp_path)
    assert_refused(moose(args, tmp_path), *words)
    assert listing(tmp_path) == before


def test_class_list_file(sources: dict[str, Path], tmp_path: Path) -> None:
    """A class-list file names the outputs; a wrong count names the class conv and both shapes."""
    names = ["unlabeled", "building", "fence", "other", "pedestrian", "pole", "road line", "road", "sidewalk",
             "vegetation", "car", "wall", "traffic sign"]
    (tmp_path / "sh.txt").write_text("# StreetHazards outputs\n" + "\n".join(names) + "\n")
    out = _ok(moose(["import", str(sources["release_v3"]), "-o", "sh.pt", "--classes", "sh.txt", "--output-stride",
                     "16", "--normalize", "imagenet"], tmp_path))
    assert "classes: 13 = sh.txt (--classes)" in out
    assert "output stride: 16 (--output-stride); atrous rates 6/12/18" in out
    assert "normalisation: imagenet (mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225); --normalize)" in out
    meta = load_checkpoint(tmp_path / "sh.pt")[1]
    assert meta.classes == tuple(names) and meta.model_kwargs["output_stride"] == 16 and meta.std[0] == 0.229
    (tmp_path / "short.yaml").write_text("classes: [road, car]\ncolors: [[128, 64, 128], [0, 0, 142]]\n")
    assert_refused(moose(["import", str(sources["release_v3"]), "-o", "x.pt", "--classes", "short.yaml"], tmp_path),
                   "has shape (13, 256, 1, 1) in the file", "needs (2, 256, 1, 1)")
    assert not (tmp_path / "x.pt").exists()
