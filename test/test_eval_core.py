"""Offline evaluation core: a real tiny MOoSe network on SynthStreet frames, oracle scores, the report writer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from moose_ros.data.common import OodSample
from moose_ros.data.synth import render_frame
from moose_ros.errors import ConfigError
from moose_ros.eval import evaluate_ood, gallery_indices, split_key, write_report
from moose_ros.eval.scorers import TorchMooseScorer
from moose_ros.export import FusedMoose
from moose_ros.metrics import OodMetrics
from moose_ros.model import build_model

SCORES = ("max_logit", "entropy", "msp")


pytestmark = pytest.mark.usefixtures("torch_threads")
TORCH_THREADS = 1


@pytest.fixture(scope="module")
def frames() -> list[OodSample]:
    """Four SynthStreet OoD test frames (64x128) in the Fishyscapes convention (0 road, 1 anomaly, 255 void)."""
    out = []
    for i in range(4):
        f = render_frame(5, split="test", index=i, height=64, width=128, ood=True)
        out.append(OodSample(f.image, f.ood, f"synth_{i}"))
    assert all((s.ood == 1).any() for s in out)
    return out


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A small random MOoSe network whose perturbed BN statistics make the heads disagree."""
    torch.manual_seed(0)
    net = build_model(
        "deeplabv3_mobilenet_v3_large", num_classes=19, aspp_channels=16, probe_width=8, reduced_tail=True
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
    return net.eval()


def test_scorer_equals_fused_graphs(model, frames) -> None:
    # one forward pass gives exactly what the exported Global-only and MOoSe graphs compute
    scorer = TorchMooseScorer(model, scores=SCORES)
    out = scorer(frames[0].image)
    assert sorted(out) == sorted(scorer.keys) and len(out) == 6
    for heads, method in (("global", "Global"), ("moose", "MOoSe")):
        fused = FusedMoose(model, scores=SCORES, heads=heads).eval()
        with torch.no_grad():
            ref = fused.run(torch.from_numpy(frames[0].image[None]))
        for i, name in enumerate(SCORES):
            want = ref["anomaly" if i == 0 else f"anomaly_{name}"][0].numpy()
            np.testing.assert_allclose(out[f"{method}/{name}"], want, rtol=0, atol=1e-6)
    assert not np.allclose(out["Global/entropy"], out["MOoSe/entropy"]), "probes must change the score"


def test_evaluate_ood_with_real_model(model, frames) -> None:
    scorer = TorchMooseScorer(model, scores=SCORES)
    ev = evaluate_ood(scorer, frames, "pooled", mode="exact", gallery=2, progress=False)
    assert ev.num_images == 4 and len(ev.gallery) == 2
    table = ev.table()
    assert list(table) == ["Global", "MOoSe"] and list(table["MOoSe"]) == list(SCORES)
    # independent recomputation of two keys straight from the scorer's maps
    for key in ("Global/max_logit", "MOoSe/entropy"):
        ref = OodMetrics("pooled", "exact")
        for s in frames:
            ref.update(scorer(s.image)[key], s.ood)
        want = ref.compute()
        for k in ("aupr", "fpr95", "auroc", "num_pixels", "num_anomaly_pixels"):
            assert ev.metrics[key][k] == pytest.approx(want[k], abs=1e-12), (key, k)
    # component metrics for each method's first score, at its best pixel-F1 threshold
    assert set(ev.components) == {"Global/max_logit", "MOoSe/max_logit"}
    comp = ev.components["MOoSe/max_logit"]
    assert comp["valid"] and comp["num_gt_components"] >= 4 and 0.0 <= comp["f1_mean"] <= 1.0
    # the gallery row: image, ground truth, Global and MOoSe max-logit overlays, all of the label's size
    titles = [t for t, _ in ev.gallery[0].panels]
    assert titles == ["image", "ground truth", "Global/max_logit", "MOoSe/max_logit"]
    assert all(p.shape == (64, 128, 3) and p.dtype == np.uint8 for _, p in ev.gallery[0].panels)


def test_oracle_scores_and_protocols(frames) -> None:
    # a deterministic score that is high exactly on anomaly pixels: perfect pixel metrics and components;
    # a second one blurred by a fixed noise field is imperfect, and per-image differs from pooled
    rng = np.random.default_rng(0)
    noise = {s.name: rng.normal(0.0, 0.8, s.ood.shape) for s in frames}

    def score_fn(image: np.ndarray) -> dict[str, np.ndarray]:
        sample = next(s for s in frames if s.image is image)
        oracle = (sample.ood == 1).astype(np.float32)
        return {"Oracle/exact": oracle, "Oracle/noisy": oracle + noise[sample.name].astype(np.float32)}

    pooled = evaluate_ood(score_fn, frames, "pooled", mode="hist", bins=4096, progress=False)
    per_image = evaluate_ood(score_fn, frames, "per-image", mode="exact", progress=False, component_keys=())
    exact = pooled.metrics["Oracle/exact"]
    assert exact["aupr"] == pytest.approx(1.0) and exact["fpr95"] == 0.0 and exact["auroc"] == pytest.approx(1.0)
    comp = pooled.components["Oracle/exact"]
    assert comp["siou"] == pytest.approx(1.0) and comp["ppv"] == pytest.approx(1.0) and comp["f1_mean"] == 1.0
    noisy_pooled, noisy_per = pooled.metrics["Oracle/noisy"], per_image.metrics["Oracle/noisy"]
    assert 0.0 < noisy_pooled["aupr"] < 1.0 and noisy_per["protocol"] == "per_image"
    assert noisy_per["num_images_used"] == 4 and noisy_per["aupr"] != pytest.approx(noisy_pooled["aupr"], abs=1e-6)
    assert per_image.components == {}
    # limit and bad keys
    assert evaluate_ood(score_fn, frames, limit=2, progress=False, component_keys=()).num_images == 2
    with pytest.raises(ConfigError, match="not among"):
        evaluate_ood(score_fn, frames, component_keys=("Oracle/none",), progress=False)


def test_write_report(tmp_path, frames) -> None:
    def score_fn(image: np.ndarray) -> dict[str, np.ndarray]:
        base = image.astype(np.float32).mean(axis=2) / 255.0
        return {"Global/max_logit": base, "MOoSe/max_logit": base**2}

    ev = evaluate_ood(score_fn, frames, gallery=3, progress=False)
    results = {
        "title": "unit test report",
        "summary": {"dataset": "synth", "images": ev.num_images},
        "ood": ev.table(),
        "components": ev.table("components"),
        "calibration": {"Global": {"ece": 0.1, "mutual_information": 0.0}, "MOoSe": {"ece": float("nan")}},
        "extra": np.arange(3),
    }
    paths = write_report(tmp_path / "rep", results, ev.curves, ev.gallery, [("Latency", "p50 12 ms")])
    md = paths["markdown"].read_text()
    assert "| Method | max_logit AUPR ↑ | max_logit FPR95 ↓ |" in md
    aupr = 100 * ev.metrics["MOoSe/max_logit"]["aupr"]
    assert f"| MOoSe | {aupr:.2f} |" in md
    assert "## Latency" in md and "p50 12 ms" in md and "Component level" in md and "gallery/002.png" in md
    data = json.loads(paths["json"].read_text())
    assert data["calibration"]["MOoSe"]["ece"] is None and data["extra"] == [0, 1, 2]
    assert data["ood"]["Global"]["max_logit"]["protocol"] == "pooled"
    with Image.open(paths["curves"]) as img:
        assert img.format == "PNG" and img.size[0] > 500
    assert sorted(p.name for p in (tmp_path / "rep" / "gallery").iterdir()) == ["000.png", "001.png", "002.png"]


def test_helpers() -> None:
    assert gallery_indices(10, 3) == [0, 4, 9] or gallery_indices(10, 3) == [0, 5, 9]
    assert gallery_indices(2, 8) == [0, 1] and gallery_indices(5, 0) == []
    assert split_key("MOoSe/msp") == ("MOoSe", "msp") and split_key("x") == ("x", "score")
