"""The fused graph: ONNX Runtime vs eager torch on odd sizes, the in-graph uint8 path, score plumbing, export CLI."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from moose_ros.backends.base import META_KEY, ModelMeta
from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.errors import ConfigError, ExportError
from moose_ros.export import FusedEnsemble, FusedMoose, export_onnx
from moose_ros.model import build_model
from moose_ros.scoring import compute_score

SCORES = ("max_logit", "entropy", "msp", "mutual_information", "energy")
MEAN = (0.3, 0.4, 0.5)
STD = (0.2, 0.25, 0.3)


def tiny_model(seed: int = 0, num_classes: int = 5) -> nn.Module:
    """A small MOoSe network whose random weights and BN statistics give varied, disagreeing heads."""
    torch.manual_seed(seed)
    model = build_model(
        "deeplabv3_mobilenet_v3_large", num_classes=num_classes, aspp_channels=16, probe_width=8, reduced_tail=True
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=gen)
                module.running_var.uniform_(0.5, 2.0, generator=gen)
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.uniform_(-0.3, 0.3, generator=gen)
        # Random init gives near-constant logits: zero the classifier biases and scale every head to logit std 2.
        classifiers = [model.classifier[-1], *(probe.classifier for probe in model.probes)]
        for conv in classifiers:
            conv.bias.zero_()
        heads = FusedMoose(model.eval()).head_logits(torch.randn(1, 3, 96, 128, generator=gen))
        for conv, logits in zip(classifiers, heads, strict=True):
            conv.weight.mul_(2.0 / float(logits.std()))
    return model.eval()


def random_images(n: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    """Smooth-ish uint8 RGB images (blocks + noise) so the segmentation varies across the image."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (n, max(h // 32, 2), max(w // 32, 2), 3)).astype(np.float32)
    up = torch.nn.functional.interpolate(torch.from_numpy(coarse).permute(0, 3, 1, 2), size=(h, w), mode="bilinear")
    noise = rng.normal(0, 12, (n, h, w, 3))
    return np.clip(up.permute(0, 2, 3, 1).numpy() + noise, 0, 255).astype(np.uint8)


pytestmark = pytest.mark.usefixtures("torch_threads")
TORCH_THREADS = 2


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model()


def _torch_outputs(fused: FusedMoose, images: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        return {k: v.numpy() for k, v in fused.eval().run(torch.from_numpy(images)).items()}


def test_in_graph_uint8_path_equals_torch_preprocessing(tmp_path):
    """Through ONNX Runtime: a 3-class 'network' that returns its input exposes the graph's normalisation."""

    class Identity(nn.Module):
        num_classes = 3
        num_probes = 0

        def forward(self, x: torch.Tensor) -> dict:
            return {"out": x, "probes": []}

    images = random_images(2, 37, 53, seed=4)
    expected = (images.astype(np.float64) / 255.0 - np.array(MEAN)) / np.array(STD)  # [N, H, W, 3]
    fused = FusedMoose(Identity(), scores=("max_logit",), mean=MEAN, std=STD)
    eager = fused.preprocess(torch.from_numpy(images)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(eager, expected, atol=1e-6, rtol=0)

    path = tmp_path / "identity.onnx"
    export_onnx(fused, path, check_tensorrt=True)
    result = OnnxRuntimeBackend(path).infer(images)
    np.testing.assert_allclose(result.anomaly, -expected.max(axis=3), atol=1e-6, rtol=0)  # max_logit = -max_c
    np.testing.assert_array_equal(result.labels, expected.argmax(axis=3))


def test_sizes_labels_from_global_head_and_meta(model, tmp_path):
    path = tmp_path / "sized.onnx"
    # "input" resolution with an output no larger than the network input: computed exactly at the output size
    export_onnx(model, path, scores=("entropy", "max_logit"), input_size=(96, 128), output_size=(48, 80),
                score_resolution="input")
    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = ModelMeta.from_json(stored[META_KEY])
    assert meta.input_size == (96, 128) and meta.output_size == (48, 80) and meta.scores == ("entropy", "max_logit")
    assert meta.architecture == "deeplabv3_mobilenet_v3_large" and meta.num_classes == 5
    backend = OnnxRuntimeBackend(path)
    images = random_images(1, 101, 147, seed=2)
    result = backend.infer(images)
    assert result.labels.shape == (1, 48, 80) and set(result.extra_scores) == {"max_logit"}

    # Labels are the argmax of the global head alone (probes never change the segmentation).
    fused = FusedMoose(model, input_size=(96, 128), output_size=(48, 80))
    with torch.no_grad():
        heads = fused.head_logits(fused.preprocess(torch.from_numpy(images)))
        up = torch.nn.functional.interpolate(heads[0], size=(48, 80), mode="bilinear", align_corners=False)
        mean_up = torch.nn.functional.interpolate(sum(heads) / len(heads), size=(48, 80), mode="bilinear")
    assert (result.labels == up.argmax(1).numpy()).mean() >= 0.999
    # Max-logit from the single upsample of the mean logits equals the max-logit of K+1 upsampled heads.
    full = compute_score(
        "max_logit", [torch.nn.functional.interpolate(h, size=(48, 80), mode="bilinear") for h in heads]
    )
    np.testing.assert_allclose(result.extra_scores["max_logit"], full.numpy(), atol=1e-4)
    np.testing.assert_allclose(result.extra_scores["max_logit"], -mean_up.amax(1).numpy(), atol=1e-4)


def test_global_graph_runs_no_probes_and_ensemble_aggregates(model, tmp_path):
    moose_path, global_path = tmp_path / "moose.onnx", tmp_path / "global.onnx"
    export_onnx(model, moose_path)
    meta = export_onnx(model, global_path, heads="global")
    assert meta.num_probes == 0 and meta.extra["heads"] == "global"
    convs = {p: sum(n.op_type == "Conv" for n in onnx.load(str(p)).graph.node) for p in (moose_path, global_path)}
    assert convs[moose_path] - convs[global_path] == 4 * 3  # K=4 probes of depth 1: 1x1, 3x3, classifier

    images = random_images(1, 64, 96, seed=3)
    fused_global = FusedMoose(model, heads="global")
    ref = _torch_outputs(fused_global, images)
    result = OnnxRuntimeBackend(global_path).infer(images)
    assert (result.labels == ref["labels"]).mean() >= 0.999

    members = [model, tiny_model(seed=1)]  # two independently initialised members
    scores = ("mutual_information", "max_logit", "entropy")
    ensemble = FusedEnsemble(members, scores=scores, score_resolution="full")
    with torch.no_grad():
        out = ensemble.run(torch.from_numpy(images))
        heads = ensemble.head_logits(ensemble.preprocess(torch.from_numpy(images)))
        # the reference: each member's logits upsampled to the image, aggregated by the scoring module
        up = [torch.nn.functional.interpolate(h, size=(64, 96), mode="bilinear", align_corners=False) for h in heads]
        expected = {name: compute_score(name, up).numpy() for name in scores}
        mean_labels = torch.stack(up).mean(0).argmax(1).to(torch.uint8).numpy()
        first_labels = up[0].argmax(1).to(torch.uint8).numpy()
    assert ensemble.num_probes == 1 and out["anomaly"].shape == (1, 64, 96)
    np.testing.assert_allclose(out["anomaly"].numpy(), expected["mutual_information"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["anomaly_max_logit"].numpy(), expected["max_logit"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["anomaly_entropy"].numpy(), expected["entropy"], rtol=1e-4, atol=1e-5)
    assert float(expected["mutual_information"].max()) > 0  # the two members disagree somewhere
    # ensembles segment with the mean of the members' logits (labels_from_mean), not the first member alone
    assert (out["labels"].numpy() == mean_labels).mean() >= 0.999
    assert (mean_labels != first_labels).any()


def test_invalid_options_are_named(model):
    with pytest.raises(ConfigError, match="score 'nope'"):
        FusedMoose(model, scores=("nope",))
    with pytest.raises(ConfigError, match="score_resolution"):
        FusedMoose(model, score_resolution="half")
    with pytest.raises(ConfigError, match="input_size"):
        FusedMoose(model, input_size=(0, 10))
    with pytest.raises(ConfigError, match="at most once"):
        FusedMoose(model, scores=("entropy", "entropy"))


def test_export_verification_catches_shapes_frozen_by_tracing(tmp_path):
    class FrozenSize(nn.Module):
        num_classes = 3

        def forward(self, x: torch.Tensor) -> dict:
            ones = torch.ones(1, 3, int(x.shape[2]), int(x.shape[3]))  # Python ints: constants in the trace
            return {"out": x * ones, "probes": []}

    with pytest.raises(ExportError, match="frozen by tracing"):
        export_onnx(FusedMoose(FrozenSize()), tmp_path / "frozen.onnx", check_tensorrt=False)
    assert not (tmp_path / "frozen.onnx").exists()
