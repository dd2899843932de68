"""Evaluation reports: ``report.md`` + ``report.json`` + ``pr_curves.png`` + ``gallery/NNN.png``.

:func:`write_report` is shared by ``moose eval`` (offline datasets) and the rosbag evaluation. Its ``results``
argument is a JSON-able dict (numpy scalars / arrays and nan are converted; nan becomes ``null`` in the JSON)
with these keys, all optional:

- ``title``: str, the report heading.
- ``summary``: {label: value}, printed as a bullet list (dataset, model, protocol, images, timing, ...).
- ``ood``: {method: {score: OodMetrics result}} -> the paper's Table 1 layout: rows = methods (e.g. Global,
  MOoSe), columns = score x {AUPR, FPR95} in %; a second table gives AUROC.
- ``components``: {method: {score: ComponentMetrics result}} -> SMIYC sIoU / PPV / mean F1 table.
- ``segmentation``: {method: {"miou", "pixel_acc", ...}} -> mIoU table.
- ``calibration``: {method: {"ece", "mutual_information", "variance", ...}} -> Table 4 style table.
- anything else goes to ``report.json`` only.

``curves``: {key: {"precision", "recall", "fpr", "tpr"}} (float arrays), plotted PR left / ROC right.
``gallery_items``: :class:`~moose_ros.eval.core.GalleryItem` rows. ``extra_sections``: [(heading, markdown)]
appended to the Markdown (e.g. latency percentiles and drops of a bag replay).
Matplotlib runs with the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.outputs import check_report_dir, staged_dir

__all__ = ["jsonable", "write_report"]

_MAX_CURVE_POINTS = 2000


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: numpy -> Python, nan/inf -> None, tuples -> lists, Paths -> str."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _pct(value: Any, std: Any = None) -> str:
    if value is None or not isinstance(value, (int, float, np.floating)) or not math.isfinite(float(value)):
        return "n/a"
    text = f"{100.0 * float(value):.2f}"
    if std is not None and isinstance(std, (int, float, np.floating)) and math.isfinite(float(std)):
        text += f" ± {100.0 * float(std):.2f}"
    return text


def _num(value: Any, digits: int = 4) -> str:
    if value is None or not isinstance(value, (int, float, np.floating)) or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}g}"


def _scores_of(table: Mapping[str, Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for per_score in table.values():
        for name in per_score:
            if name not in names:
                names.append(name)
    return names


def _ood_tables(ood: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    scores = _scores_of(ood)
    first = next(iter(next(iter(ood.values())).values()))
    protocol = first.get("protocol", "?")
    lines = [f"## OoD detection (pixel level, protocol `{protocol}`, %)", ""]
    head = "| Method | " + " | ".join(f"{s} AUPR ↑ | {s} FPR95 ↓" for s in scores) + " |"
    lines += [head, "|---|" + "---:|" * (2 * len(scores))]
    for method, per_score in ood.items():
        cells = []
        for s in scores:
            r = per_score.get(s, {})
            cells += [_pct(r.get("aupr"), r.get("aupr_std")), _pct(r.get("fpr95"), r.get("fpr95_std"))]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "| Method | " + " | ".join(f"{s} AUROC ↑" for s in scores) + " |"]
    lines.append("|---|" + "---:|" * len(scores))
    for method, per_score in ood.items():
        lines.append(
            f"| {method} | "
            + " | ".join(_pct(per_score.get(s, {}).get("auroc"), per_score.get(s, {}).get("auroc_std")) for s in scores)
            + " |"
        )
    notes = {r.get("note") for per_score in ood.values() for r in per_score.values() if r.get("note")}
    lines += [
        "",
        f"Valid pixels: {first.get('num_pixels')}, anomaly pixels: {first.get('num_anomaly_pixels')}; images:"
        f" {first.get('num_images')} (scored {first.get('num_images_used')},"
        f" skipped without anomaly {first.get('num_images_skipped')}). Mode `{first.get('mode')}`"
        + (f", histogram bin width {_num(first.get('bin_width'))}" if first.get("mode") == "hist" else "")
        + ". FPR95 = FPR at the first threshold reaching 95 % TPR; AUPR = step-wise average precision."
        + (" Per-image values: mean ± std over images." if protocol == "per_image" else ""),
    ]
    lines += [f"- note: {n}" for n in sorted(notes)]
    return [*lines, ""]


def _component_table(components: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    lines = [
        "## Component level (SegmentMeIfYouCan)",
        "",
        "| Method / score | threshold | pixel F1 | sIoU ↑ | PPV ↑ | mean F1 ↑ | F1@0.25 | F1@0.50 | F1@0.75 |"
        " GT comp. | pred. comp. |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    filters: set[str] = set()
    for method, per_score in components.items():
        for score, r in per_score.items():
            if not r.get("valid", True):
                lines.append(f"| {method} / {score} | " + " | ".join(["n/a"] * 10) + " |")
                continue
            filters.update(str(tuple(f)) for f in r.get("size_filters") or [])
            lines.append(
                f"| {method} / {score} | {_num(r.get('threshold'))} | {_pct(r.get('pixel_f1'))} | "
                f"{_pct(r.get('siou'))} | {_pct(r.get('ppv'))} | {_pct(r.get('f1_mean'))} | {_pct(r.get('f1_25'))}"
                f" | {_pct(r.get('f1_50'))} | {_pct(r.get('f1_75'))} | {r.get('num_gt_components')} |"
                f" {r.get('num_pred_components')} |"
            )
    lines += [
        "",
        "Pixel threshold: maximum pooled pixel F1; 8-connected components; mean F1 over sIoU/PPV thresholds"
        " 0.25..0.75 (step 0.05). Size filters (min predicted, min ground-truth area, px): "
        + (", ".join(sorted(filters)) or "n/a")
        + ".",
        "",
    ]
    return lines


def _generic_table(title: str, table: Mapping[str, Mapping[str, Any]], pct_keys: Sequence[str]) -> list[str]:
    cols: list[str] = []
    for r in table.values():
        cols += [k for k, v in r.items() if k not in cols and isinstance(v, (int, float, np.floating))]
    lines = [f"## {title}", "", "| Method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for method, r in table.items():
        cells = [_pct(r.get(c)) if c in pct_keys else _num(r.get(c)) for c in cols]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return [*lines, "", f"Percent: {', '.join(k for k in pct_keys if k in cols) or 'none'}.", ""]


def _decimate(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size <= _MAX_CURVE_POINTS:
        return x, y
    idx = np.unique(np.linspace(0, x.size - 1, _MAX_CURVE_POINTS).round().astype(int))
    return x[idx], y[idx]


def _plot_curves(path: Path, curves: Mapping[str, Mapping[str, np.ndarray]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, (ax_pr, ax_roc) = plt.subplots(1, 2, figsize=(11, 4.6))
    for key, c in curves.items():
        recall, precision = (np.asarray(c[k], dtype=np.float64) for k in ("recall", "precision"))
        fpr, tpr = (np.asarray(c[k], dtype=np.float64) for k in ("fpr", "tpr"))
        if recall.size:
            r, p = _decimate(np.concatenate(([0.0], recall)), np.concatenate((precision[:1], precision)))
            ax_pr.step(r, p, where="post", label=key, linewidth=1.2)
        if fpr.size and np.all(np.isfinite(fpr)):
            f, t = _decimate(np.concatenate(([0.0], fpr)), np.concatenate(([0.0], tpr)))
            ax_roc.plot(f, t, label=key, linewidth=1.2)
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    ax_roc.axhline(0.95, color="grey", linestyle=":", linewidth=0.8)
    for ax in (ax_pr, ax_roc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_gallery_row(path: Path, item: Any) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    panels = list(item.panels)
    h, w = panels[0][1].shape[:2]
    panel_w = 3.2  # inches
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_w * len(panels), panel_w * h / w + 0.6))
    axes = np.atleast_1d(axes)
    for ax, (title, rgb) in zip(axes, panels, strict=True):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(item.name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(
    out_dir: str | os.PathLike[str],
    results: Mapping[str, Any],
    curves: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    gallery_items: Sequence[Any] | None = None,
    extra_sections: Sequence[tuple[str, str]] | None = None,
    *,
    include: Mapping[str, Path] | None = None,
    option: str = "--out",
) -> dict[str, Path]:
    """Write the report files into ``out_dir``; returns {"markdown", "json", "curves"?, "gallery"?}.

    The report is built in a temporary directory beside ``out_dir`` and renamed into place when complete; an
    earlier report in ``out_dir`` is replaced whole (no stale gallery image stays), a directory holding other files
    is refused (:func:`moose_ros.outputs.check_report_dir`). ``include`` maps sub-directory names of the report
    (e.g. ``"logs"``) to directories moved into it before the rename; ``option`` names ``out_dir`` in errors.
    """
    out = check_report_dir(out_dir, option)
    with staged_dir(out, option, replace=True) as stage:
        names = _write_files(stage, results, curves, gallery_items, extra_sections)
        for name, source in (include or {}).items():
            if Path(source).is_dir():
                shutil.move(str(source), str(stage / name))
    return {key: out / name for key, name in names.items()}


def _write_files(
    out: Path,
    results: Mapping[str, Any],
    curves: Mapping[str, Mapping[str, np.ndarray]] | None,
    gallery_items: Sequence[Any] | None,
    extra_sections: Sequence[tuple[str, str]] | None,
) -> dict[str, str]:
    """Write the report into the (new, empty) directory ``out``; returns {key: file name} of what was written."""
    names: dict[str, str] = {"markdown": "report.md", "json": "report.json"}
    title = str(results.get("title") or "MOoSe evaluation")
    md: list[str] = [f"# {title}", ""]
    for label, value in (results.get("summary") or {}).items():
        md.append(f"- {label}: {value}")
    md.append("")
    if results.get("ood"):
        md += _ood_tables(results["ood"])
    if results.get("components"):
        md += _component_table(results["components"])
    if results.get("segmentation"):
        md += _generic_table("Segmentation", results["segmentation"], ("miou", "pixel_acc"))
    if results.get("calibration"):
        md += _generic_table("Calibration and head diversity", results["calibration"], ("ece",))
    if curves:
        names["curves"] = "pr_curves.png"
        _plot_curves(out / names["curves"], curves, title)
        md += ["## Curves", "", "![PR and ROC curves](pr_curves.png)", ""]
        protocols = {r.get("protocol") for per in (results.get("ood") or {}).values() for r in per.values()}
        if "per_image" in protocols:
            md += [
                "Curves pool all valid pixels (from the score histograms): the per-image mean has no single curve.",
                "",
            ]
    if gallery_items:
        names["gallery"] = "gallery"
        (out / "gallery").mkdir()
        md += [
            "## Gallery",
            "",
            "Columns: image | ground truth (anomaly red, void black) | score overlays (turbo colour map, each scaled to"
            " its own 1st-99th percentile).",
            "",
        ]
        for i, item in enumerate(gallery_items):
            _plot_gallery_row(out / "gallery" / f"{i:03d}.png", item)
            md += [f"![{item.name}](gallery/{i:03d}.png)", ""]
    for heading, body in extra_sections or ():
        md += [f"## {heading}", "", body.rstrip(), ""]
    (out / names["markdown"]).write_text("\n".join(md), encoding="utf-8")
    (out / names["json"]).write_text(json.dumps(jsonable(results), indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return names
