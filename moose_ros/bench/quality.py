"""What a fast post-processing costs in quality: labels and AUPR against the exact full-resolution outputs.

:func:`compare_work_sizes` runs a checkpoint's network once per image of an OoD dataset and post-processes the same
head logits (:func:`moose_ros.export.postprocess.postprocess`) at several work resolutions and at the output size
(the exact reference, ``work_size="output"``). It reports, per work resolution, the share of pixels whose label
equals the reference label, and per method (Global, MOoSe) and score the pooled AUPR / FPR95 next to the
reference's. ``moose bench quality`` prints it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = ["WORK_CHOICES", "compare_work_sizes", "format_quality"]

#: Work resolutions: the fused graph's ``input`` and ``feature`` (:data:`~moose_ros.export.postprocess.
#: SCORE_RESOLUTIONS`), and ``feature*F``: labels and scores at F times the heads' resolution.
WORK_CHOICES = ("feature", "input", "feature*2", "feature*4")


def _work(name: str, heads: Sequence[Any], net_size: tuple[int, int]) -> tuple[Any, Any]:
    """The ``(work_size, score_size)`` arguments of :func:`postprocess` for ``name`` (see :data:`WORK_CHOICES`)."""
    from moose_ros.export.postprocess import resolution_sizes

    if name in ("input", "feature"):
        return resolution_sizes(name, net_size)
    if name.startswith("feature*") and name.partition("*")[2].isdigit():
        factor = int(name.partition("*")[2])
        return (int(heads[0].shape[2]) * factor, int(heads[0].shape[3]) * factor), None
    raise ConfigError(f"work resolution '{name}' is unknown; allowed: {', '.join(WORK_CHOICES)}, feature*<int>")


def compare_work_sizes(
    checkpoint: str | os.PathLike[str],
    dataset: Sequence[Any],
    *,
    works: Sequence[str] = ("feature", "input"),
    scores: Sequence[str] = ("max_logit", "entropy", "msp"),
    limit: int | None = None,
    input_size: Sequence[int] | str | None = "checkpoint",
) -> dict[str, Any]:
    """Label agreement and AUPR / FPR95 of each work resolution against the exact outputs (see module docstring).

    Args:
        checkpoint: MOoSe checkpoint (``.pt``).
        dataset: records with ``image`` uint8 [H, W, 3] and ``ood`` uint8 [H, W] (0 / 1 / 255 void).
        works: work resolutions from :data:`WORK_CHOICES`.
        scores: scores to compare (SML needs the checkpoint's calibration).
        limit: first ``limit`` images only.
        input_size: the network input size, as for :func:`moose_ros.export.make_fused`.

    Returns:
        ``{"num_images", "works", "labels": {work: agreement fraction}, "metrics": {method: {score: {work or
        "exact": {"aupr", "fpr95", "auroc"}}}}}``.
    """
    import torch

    from moose_ros.export.onnx_export import make_fused
    from moose_ros.export.postprocess import postprocess
    from moose_ros.metrics import OodMetrics

    fused, _ = make_fused(checkpoint, scores=tuple(scores), input_size=input_size)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise ConfigError("compare_work_sizes: the dataset holds no images")
    columns = ["exact", *works]
    metrics = {(m, s, c): OodMetrics(mode="hist") for m in ("Global", "MOoSe") for s in scores for c in columns}
    agree = {w: 0 for w in works}
    total = 0
    for index in range(n):
        sample = dataset[index]
        image, ood = np.asarray(sample.image), np.asarray(sample.ood)
        with torch.inference_mode():
            x = fused.preprocess(torch.from_numpy(np.ascontiguousarray(image))[None])
            heads = fused.head_logits(x)
            size = (image.shape[0], image.shape[1])
            net_size = (int(x.shape[2]), int(x.shape[3]))
            for method, used in (("Global", heads[:1]), ("MOoSe", heads)):
                ref_labels, ref = postprocess(used, size, scores=scores, work_size="output", sml=fused.sml)
                for name in scores:
                    metrics[(method, name, "exact")].update(ref[name][0].numpy(), ood)
                for work in works:
                    work_size, score_size = _work(work, used, net_size)
                    labels, maps = postprocess(used, size, scores=scores, work_size=work_size,
                                               score_size=score_size, sml=fused.sml)
                    if method == "Global":
                        agree[work] += int((labels == ref_labels).sum())
                    for name in scores:
                        metrics[(method, name, work)].update(maps[name][0].numpy(), ood)
        total += size[0] * size[1]
    table: dict[str, Any] = {}
    for (method, name, column), metric in metrics.items():
        result = metric.compute()
        entry = {key: 100.0 * float(result[key]) for key in ("aupr", "fpr95", "auroc")}
        table.setdefault(method, {}).setdefault(name, {})[column] = entry
    return {"num_images": n, "works": list(works), "labels": {w: agree[w] / total for w in works}, "metrics": table}


def format_quality(report: dict[str, Any]) -> str:
    """Markdown: label agreement per work resolution, then AUPR / FPR95 per method and score with the changes."""
    works = report["works"]
    lines = [
        f"# Fast post-processing vs exact full-resolution outputs ({report['num_images']} images)",
        "",
        "| work resolution | label agreement with exact (global head) |",
        "|---|---|",
        *(f"| {w} | {100 * report['labels'][w]:.2f} % |" for w in works),
        "",
        "| method | score | exact AUPR / FPR95 | " + " | ".join(f"{w}: AUPR (change) / FPR95" for w in works) + " |",
        "|---|---|---|" + "---|" * len(works),
    ]
    for method, per_score in report["metrics"].items():
        for name, cols in per_score.items():
            ref = cols["exact"]
            cells = [
                f"{cols[w]['aupr']:.2f} ({cols[w]['aupr'] - ref['aupr']:+.2f}) / {cols[w]['fpr95']:.2f}" for w in works
            ]
            lines.append(f"| {method} | {name} | {ref['aupr']:.2f} / {ref['fpr95']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
