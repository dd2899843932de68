"""``moose bench int8``: what an int8 graph (``moose export --int8``) buys in speed and costs in quality.

Two fused graphs, the fp32 export and its int8 copy, run on ONNX Runtime's CPU backend side by side:

- speed: interleaved rounds (fp32, int8, rotating order) at each image size, median ms and the ratio fp32 / int8;
- segmentation: val mIoU of each graph's ``labels`` against the ground truth, and the share of pixels on which the
  two graphs' labels agree;
- anomaly scores: pooled AUPR / FPR95 of every score output on an OoD split (the whole image; void excluded).

Both graphs see the same decoded images, so every difference is the quantisation's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = ["compare_int8", "format_int8"]

NAMES = ("fp32", "int8")


def _quality(backends: dict[str, Any], val: Sequence[Any], ood: Sequence[Any]) -> dict[str, Any]:
    """val mIoU per graph, label agreement, and per score the pooled OoD metrics per graph."""
    from moose_ros.metrics import OodMetrics, SegmentationMetrics

    meta = backends["fp32"].meta
    seg = {name: SegmentationMetrics(meta.num_classes) for name in NAMES}
    agree = total = 0
    for sample in val:
        image, label = np.asarray(sample.image), np.asarray(sample.label)
        labels = {name: backends[name].infer(image[None]).labels[0] for name in NAMES}
        for name in NAMES:
            seg[name].update(labels[name], label)
        agree += int((labels["fp32"] == labels["int8"]).sum())
        total += labels["fp32"].size
    ood_metrics = {(name, s): OodMetrics(mode="hist") for name in NAMES for s in meta.scores}
    for sample in ood:
        image, truth = np.asarray(sample.image), np.asarray(sample.ood)
        for name in NAMES:
            result = backends[name].infer(image[None])
            for score in meta.scores:
                ood_metrics[(name, score)].update(result.score(score)[0], truth)
    scores: dict[str, Any] = {}
    for (name, score), metric in ood_metrics.items():
        out = metric.compute()
        scores.setdefault(score, {})[name] = {"aupr": 100 * float(out["aupr"]), "fpr95": 100 * float(out["fpr95"])}
    return {
        "miou": {name: 100 * float(seg[name].compute()["miou"]) for name in NAMES},
        "label_agreement": 100 * agree / max(total, 1),
        "scores": scores,
    }


def _speed(backends: dict[str, Any], sizes: Sequence[tuple[int, int]], repeats: int) -> list[dict[str, Any]]:
    """Median ms of each graph per size over ``repeats`` interleaved rounds (one warm-up round first)."""
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        image = rng.integers(0, 256, (1, *size, 3), dtype=np.uint8)
        times: dict[str, list[float]] = {name: [] for name in NAMES}
        for round_index in range(repeats + 1):
            order = NAMES if round_index % 2 == 0 else NAMES[::-1]
            for name in order:
                start = time.perf_counter()
                backends[name].infer(image)
                if round_index > 0:
                    times[name].append(1000 * (time.perf_counter() - start))
        median = {name: statistics.median(values) for name, values in times.items()}
        rows.append({"size": list(size), **{f"{n}_ms": median[n] for n in NAMES},
                     "speedup": median["fp32"] / median["int8"]})
    return rows


def compare_int8(
    fp32: str | Path,
    int8: str | Path,
    *,
    val: Sequence[Any],
    ood: Sequence[Any],
    sizes: Sequence[tuple[int, int]] = ((720, 1280),),
    repeats: int = 5,
    threads: int = 1,
) -> dict[str, Any]:
    """Speed and quality of the int8 graph against the fp32 one (see the module docstring).

    Args:
        fp32, int8: fused ONNX graphs of the same checkpoint, the second from ``moose export --int8``.
        val: records with ``image`` uint8 [H, W, 3] and ``label`` uint8 [H, W] train ids.
        ood: records with ``image`` and ``ood`` uint8 [H, W] (0 / 1 / 255 void).
        sizes: (H, W) image sizes of the speed rounds.
        repeats: timed rounds per size.
        threads: ONNX Runtime intra-op threads of each graph.

    Returns:
        ``{"speed": [{"size", "fp32_ms", "int8_ms", "speedup"}], "miou": {graph: %}, "label_agreement": %,
        "scores": {score: {graph: {"aupr", "fpr95"}}}, "val_images", "ood_images"}``.
    """
    from moose_ros.backends.onnxruntime import OnnxRuntimeBackend

    if len(val) == 0 or len(ood) == 0:
        raise ConfigError("bench int8: the val and OoD splits must each hold at least one image")
    backends = {name: OnnxRuntimeBackend(path, threads=threads) for name, path in zip(NAMES, (fp32, int8), strict=True)}
    try:
        for name, path in zip(NAMES, (fp32, int8), strict=True):
            quantised = "int8" in backends[name].meta.extra
            if quantised != (name == "int8"):
                raise ConfigError(f"bench int8: {name.upper()} {path} is {'an int8' if quantised else 'an fp32'} graph "
                                  f"(its metadata {'records' if quantised else 'has no'} 'int8' quantisation); give "
                                  "the fp32 export first and the `moose export --int8` one second")
        if backends["fp32"].meta.scores != backends["int8"].meta.scores:
            raise ConfigError(f"bench int8: the graphs export different scores ({backends['fp32'].meta.scores} vs "
                              f"{backends['int8'].meta.scores}); export both from the same options")
        report = _quality(backends, val, ood)
        report["speed"] = _speed(backends, sizes, repeats)
    finally:
        for backend in backends.values():
            backend.close()
    return {**report, "val_images": len(val), "ood_images": len(ood), "threads": threads}


def format_int8(report: dict[str, Any]) -> str:
    """Markdown: speed per size, then mIoU, label agreement and each score's AUPR / FPR95 with the changes."""
    lines = [
        f"# int8 vs fp32 graph (ONNX Runtime CPU, {report['threads']} thread(s))",
        "",
        "| input | fp32 ms | int8 ms | fp32 / int8 |",
        "|---|---|---|---|",
        *(f"| {r['size'][0]}x{r['size'][1]} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['speedup']:.2f} |"
          for r in report["speed"]),
        "",
        f"val mIoU ({report['val_images']} images): fp32 {report['miou']['fp32']:.2f} %, int8 "
        f"{report['miou']['int8']:.2f} % (change {report['miou']['int8'] - report['miou']['fp32']:+.2f}); labels "
        f"agree on {report['label_agreement']:.2f} % of pixels",
        "",
        f"| score ({report['ood_images']} OoD images, pooled) | fp32 AUPR / FPR95 | int8 AUPR / FPR95 | AUPR change |",
        "|---|---|---|---|",
    ]
    for score, per in report["scores"].items():
        a, b = per["fp32"], per["int8"]
        lines.append(f"| {score} | {a['aupr']:.2f} / {a['fpr95']:.2f} | {b['aupr']:.2f} / {b['fpr95']:.2f} | "
                     f"{b['aupr'] - a['aupr']:+.2f} |")
    return "\n".join(lines) + "\n"
