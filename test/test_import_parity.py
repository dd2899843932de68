"""`moose import` parity: generated weights in each source's exact key layout, imported, give the logits (global head
and every probe) and the fused ONNX graph's max-logit / entropy / MSP of a reference forward written independently
over the source's own key names (test/release_layouts.py), to 1e-3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from release_layouts import generate, layout_shapes, reference_heads, reference_scores

from moose_ros.backends.onnxruntime import OnnxRuntimeBackend
from moose_ros.export import export_onnx
from moose_ros.model import load_checkpoint
from moose_ros.model.weight_import import import_weights

pytestmark = pytest.mark.usefixtures("torch_threads")
TORCH_THREADS = 2
TOL = 1e-3
SCORES = ("max_logit", "entropy", "msp")

#: layout -> (ResNet depth, classes, output stride, file wrapper, expected format, architecture, normalisation)
CASES = {
    "release_v3": (50, 13, 8, "model_state_dict", "moose-eccv2022", "deeplabv3_resnet50", "none"),
    "release_v3plus": (101, 19, 16, "model_state_dict", "moose-eccv2022", "deeplabv3plus_resnet101", "imagenet"),
    "release_psp": (50, 13, 8, "model_state_dict", "moose-eccv2022", "pspnet_resnet50", "none"),
    "vainf_v3plus": (101, 19, 16, "model_state", "vainf", "deeplabv3plus_resnet101", "imagenet"),
    "vainf_v3": (50, 19, 16, "model_state", "vainf", "deeplabv3_resnet50", "imagenet"),
    "torchvision": (50, 19, 8, None, "torchvision", "deeplabv3_resnet50", "imagenet"),
}


def write_source(layout: str, path: Path, seed: int = 3) -> dict[str, torch.Tensor]:
    """Write ``layout``'s generated state dict the way its project saves it; returns the (unprefixed) state."""
    depth, classes, _, wrapper, *_ = CASES[layout]
    state = generate(layout_shapes(layout, depth, classes), seed)
    if wrapper == "model_state_dict":  # the release: an nn.DataParallel's state dict
        torch.save({wrapper: {f"module.{k}": v for k, v in state.items()}}, path)
    elif wrapper == "model_state":  # VainF's training checkpoint
        torch.save({wrapper: state, "optimizer_state": {"state": {}, "param_groups": []}, "cur_itrs": 30000,
                    "best_score": 0.77}, path)
    else:
        torch.save(state, path)
    return state


def _normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.mark.parametrize("layout", list(CASES))
def test_import_matches_reference(layout: str, tmp_path: Path) -> None:
    depth, classes, stride, _, fmt, arch, norm = CASES[layout]
    state = write_source(layout, tmp_path / "src.pth")
    if layout == "release_v3plus":
        assert len(state) == 744  # the release's DeepLabV3+-R101 tensor count (five probes built, four run)
    result = import_weights(tmp_path / "src.pth", tmp_path / "imported.pt")
    assert (result.format, result.architecture, result.output_stride, result.normalize) == (fmt, arch, stride, norm)
    assert len(result.classes.classes) == classes and result.probes_imported == fmt.startswith("moose")

    model, meta = load_checkpoint(result.path)
    assert meta.model_kwargs["output_stride"] == stride and meta.probe_config["trained"] == result.probes_imported
    images = np.random.default_rng(7).integers(0, 256, size=(1, 65, 97, 3), dtype=np.uint8)
    x = _normalised(images, meta.mean, meta.std)
    with torch.no_grad():
        ours = model(x)
        ref = reference_heads(layout, state, x, depth, stride)
    got = [ours["out"], *ours["probes"]][: len(ref)]
    assert len(ref) == (5 if result.probes_imported else 1) and model.num_probes == 4
    for index, (a, b) in enumerate(zip(got, ref, strict=True)):
        assert a.shape == b.shape, (index, a.shape, b.shape)
        assert float(b.std()) > 0.1, "degenerate reference logits"
        assert float((a - b).abs().max()) <= TOL, f"head {index}: max |diff| {float((a - b).abs().max()):.2e}"

    onnx_path = tmp_path / "imported.onnx"
    heads = "moose" if result.probes_imported else "global"
    export_onnx(result.path, onnx_path, scores=SCORES, score_resolution="full", heads=heads, check_tensorrt=False)
    graph = OnnxRuntimeBackend(onnx_path, threads=2).infer(images)
    want = reference_scores(ref, images.shape[1:3])
    assert graph.labels.shape == (1, 65, 97)
    assert (graph.labels == want["labels"].numpy()).mean() >= 0.999
    outputs = {"max_logit": graph.anomaly, **graph.extra_scores}
    for name in SCORES:
        target = want[name].numpy()
        assert float(target.max() - target.min()) > 1e-3, f"{name}: degenerate reference scores"
        assert np.abs(outputs[name] - target).max() <= TOL, f"{name}: {np.abs(outputs[name] - target).max():.2e}"
