"""The report of one or more bag replays, written with the shared :func:`moose_ros.eval.report.write_report`.

The OoD table (pooled protocol, the ``moose eval`` layout: methods x scores), PR/ROC curves and the overlay
gallery come from the shared writer; this module adds the replay-specific sections (per-image metrics, latency
percentiles, drops, throughput) as ``extra_sections`` and the full per-run numbers under ``runs`` in the JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.bag.collect import BagEvalResult

__all__ = ["write_bag_report"]


def _pct(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{100.0 * float(value):.2f}"


def _ms(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.1f}"


def _key(result: BagEvalResult) -> str:
    return f"{result.method}/{result.score}"


def _per_image_section(results: Sequence[BagEvalResult]) -> str:
    lines = [
        "| Method | score | AUPR ↑ | FPR95 ↓ | AUROC ↑ | images scored |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        m = r.per_image or {}
        cells = [
            f"{_pct(m.get(k))} ± {_pct(m.get(k + '_std'))}" if m else "n/a" for k in ("aupr", "fpr95", "auroc")
        ]
        lines.append(f"| {r.method} | {r.score} | {' | '.join(cells)} | {m.get('num_images_used', 'n/a')} |")
    lines += ["", "Mean ± std over images holding anomaly pixels (StreetHazards / paper protocol), in %."]
    return "\n".join(lines)


def _latency_section(results: Sequence[BagEvalResult]) -> str:
    lines = [
        "| Method | score | mode | sent | answered | dropped | fps | p50 ms | p90 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lat = r.latency_ms
        lines.append(
            f"| {r.method} | {r.score} | {r.mode} | {r.frames_sent} | {r.frames_answered} | {r.frames_dropped} "
            f"| {r.fps:.2f} | {_ms(lat.get('p50'))} | {_ms(lat.get('p90'))} | {_ms(lat.get('p95'))} "
            f"| {_ms(lat.get('p99'))} | {_ms(lat.get('max'))} |"
        )
    lines += [
        "",
        "Latency: publish of the bag frame -> receipt of the node's `~/anomaly` with the same header stamp, over "
        "DDS (loopback profile) in the replay process. Dropped: sent but never answered (the node keeps only the "
        "newest frame). fps: answered frames / (first publish -> last answer).",
    ]
    lines += [
        "",
        "The node's own counters (`/diagnostics`, totals at the end of the replay):",
        "",
        "| Method | score | backend | received | processed | overwritten (latest wins) | rejected "
        "| lost in transport | inference ms (mean) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        n = r.node_stats
        if not n:
            lines.append(f"| {r.method} | {r.score} | no diagnostics received |  |  |  |  |  |  |")
            continue
        lines.append(
            f"| {r.method} | {r.score} | {n.get('backend', '')} | {n['received']} | {n['processed']} "
            f"| {n['dropped']} | {n['rejected']} | {r.frames_sent - n['received']} | {_ms(n.get('inference_ms'))} |"
        )
    dropped = [(r, r.dropped_names) for r in results if r.dropped_names]
    for r, names in dropped:
        shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
        lines.append(f"- dropped by {r.method} / {r.score}: {shown}")
    return "\n".join(lines)


def _gallery(results: Sequence[BagEvalResult]) -> list[Any]:
    """One row per kept frame: image, ground truth, segmentation (first run), every run's score overlay."""
    from moose_ros.data import CITYSCAPES_COLORS
    from moose_ros.eval.core import GalleryItem, render_gallery_item

    frames: dict[str, dict[str, Any]] = {}
    for r in results:
        for g in r.gallery:
            entry = frames.setdefault(g.name, {"frame": g, "maps": {}})
            entry["maps"][_key(r)] = g.score
            if entry["frame"].labels is None and g.labels is not None:
                entry["frame"] = g
    items = []
    palette = np.zeros((256, 3), np.uint8)
    palette[: len(CITYSCAPES_COLORS)] = np.asarray(CITYSCAPES_COLORS, np.uint8)
    for name, entry in frames.items():
        frame = entry["frame"]
        ood = frame.ood if frame.ood is not None else np.zeros(frame.image.shape[:2], np.uint8)
        item = render_gallery_item(frame.image, ood, entry["maps"], name)
        if not isinstance(item, GalleryItem):
            continue
        if frame.labels is not None:
            item.panels.insert(2, ("segmentation (node)", palette[frame.labels]))
        items.append(item)
    return items


def write_bag_report(
    out_dir: str | Path,
    results: Sequence[BagEvalResult],
    *,
    title: str | None = None,
    notes: Sequence[str] = (),
    include: Mapping[str, Path] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.json``, ``pr_curves.png`` and ``gallery/`` for ``results`` into ``out_dir``.

    Args:
        out_dir: report directory (written whole under a temporary name, then renamed; an earlier report there
            is replaced, a directory holding other files refused).
        results: one :class:`BagEvalResult` per replay (method x score); methods become the table's rows.
        title: report heading.
        notes: extra summary bullets (data, models, pacing).
        include: sub-directories moved into the report (e.g. ``{"logs": node_log_dir}``).

    Returns:
        The paths from :func:`moose_ros.eval.report.write_report` (``markdown``, ``json``, ...).
    """
    from moose_ros.eval.report import write_report

    if not results:
        raise ValueError("write_bag_report needs at least one result")
    first = results[0]
    summary: dict[str, Any] = {"bag": first.bag}
    for i, note in enumerate(notes):
        summary[f"note {i + 1}"] = note
    models: dict[str, str] = {}
    for r in results:
        models.setdefault(r.method, Path(r.model).name)
    summary["models"] = "; ".join(f"{method}: {name}" for method, name in models.items())
    summary["scores"] = ", ".join(dict.fromkeys(r.score for r in results))
    summary["replay"] = ", ".join(dict.fromkeys(r.mode for r in results))
    with_gt = [r for r in results if r.pooled is not None]
    summary["frames with ground truth"] = first.frames_with_ground_truth if with_gt else "none (latency report only)"
    payload: dict[str, Any] = {"title": title or f"Bag replay through moose_node: {Path(first.bag).name}",
                               "summary": summary}
    if with_gt:
        ood: dict[str, dict[str, Any]] = {}
        for r in with_gt:
            ood.setdefault(r.method, {})[r.score] = r.pooled
        payload["ood"] = ood
    payload["runs"] = [r.to_dict() for r in results]
    curves = {_key(r): r.curves for r in with_gt if r.curves is not None}
    sections = []
    if with_gt:
        sections.append(("OoD detection, per-image protocol", _per_image_section(with_gt)))
    sections.append(("Latency, drops and throughput through the node", _latency_section(results)))
    return write_report(out_dir, payload, curves=curves or None, gallery_items=_gallery(results),
                        extra_sections=sections, include=include)
