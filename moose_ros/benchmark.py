"""Inference benchmark: global head vs MOoSe vs a deep ensemble, per backend, architecture and image size.

For each architecture a MOoSe network with random weights is built and exported as fused graphs (the same
``export_onnx`` the product uses), one per variant:

- ``global``: the global head alone (probes not in the graph), max-logit;
- ``moose``: global head + K probes, max-logit (one upsample of the mean logits);
- ``moose_entropy_feature`` / ``moose_entropy_full``: entropy at feature resolution vs exact full resolution;
- ``ensemble``: M independent global networks in ONE graph (:class:`~moose_ros.export.fused.FusedEnsemble`:
  shared preprocessing, mean logits, one post-processing like MOoSe's, max-logit) — the paper's deep-ensemble
  baseline (M = 5), implemented as efficiently as MOoSe;
- ``ensemble_sessions``: the global graph run M times in a row (M separate pipelines, as M deployed models would
  run; weights do not change latency, so the same global session is reused; no host-side aggregation counted).

Latencies are wall-clock ``Backend.infer`` times on uint8 [1, H, W, 3] images; the variants are run interleaved
(round-robin, rotating order) so machine load affects all of them alike and the ratios come from the same run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.errors import BackendError, ConfigError
from moose_ros.sizes import parse_size

__all__ = ["TARGETS", "VARIANTS", "BenchConfig", "format_markdown", "run_benchmark"]

LOG = logging.getLogger(__name__)

LIGHT_ARCH = "deeplabv3_mobilenet_v3_large"
#: variant -> export options (``ensemble`` is built separately)
VARIANTS: dict[str, dict[str, Any]] = {
    "global": {"heads": "global", "scores": ("max_logit",)},
    "moose": {"heads": "moose", "scores": ("max_logit",)},
    "moose_entropy_feature": {"heads": "moose", "scores": ("entropy",), "score_resolution": "feature"},
    "moose_entropy_full": {"heads": "moose", "scores": ("entropy",), "score_resolution": "full"},
    "ensemble": {"scores": ("max_logit",)},
    "ensemble_sessions": {},
}
#: (ratio name, numerator, denominator)
RATIOS = (
    ("moose/global", "moose", "global"),
    ("ensemble/moose", "ensemble", "moose"),
    ("ensemble_sessions/moose", "ensemble_sessions", "moose"),
    ("entropy full/feature", "moose_entropy_full", "moose_entropy_feature"),
)
#: Targets on the ONNX Runtime CPU backend: (ratio, architecture or "*", comparison, bound)
TARGETS = (
    ("moose/global", "deeplabv3_resnet50", "<=", 1.05),
    ("moose/global", LIGHT_ARCH, "<=", 1.15),
    ("ensemble/moose", "*", ">=", 4.5),
    ("ensemble_sessions/moose", "*", ">=", 4.5),
)


@dataclass
class BenchConfig:
    """What ``moose bench infer`` measures (see ``moose bench infer --help``)."""

    archs: tuple[str, ...] = (LIGHT_ARCH, "deeplabv3_resnet50")
    sizes: tuple[tuple[int, int], ...] = ((480, 640), (720, 1280), (1024, 2048))
    backends: tuple[str, ...] | None = None  # None: every available ONNX backend
    variants: tuple[str, ...] = tuple(VARIANTS)
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    ensemble_size: int = 5
    num_classes: int = 19
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"bench variants {unknown} unknown; allowed values: {', '.join(VARIANTS)}")
        if self.repeats < 1 or self.warmup < 0 or self.ensemble_size < 1:
            raise ConfigError("bench: repeats >= 1, warmup >= 0 and ensemble_size >= 1 are required")
        if "ensemble_sessions" in self.variants and "global" not in self.variants:
            raise ConfigError("bench: variant ensemble_sessions reuses the global graph; add variant global")


def _params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _export_variants(config: BenchConfig, arch: str, folder: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Export every variant of ``arch``; returns ({variant: (onnx path, FusedMoose)}, parameter counts)."""
    import torch

    from moose_ros.export import FusedEnsemble, export_onnx, make_fused
    from moose_ros.model import build_model

    kwargs = {"num_classes": config.num_classes, **config.model_kwargs}
    torch.manual_seed(config.seed)
    model = build_model(arch, **kwargs).eval()
    trunk = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("probes."))
    counts = {"global": int(trunk), "moose": _params(model), "probes": _params(model) - int(trunk)}
    exported: dict[str, Any] = {}
    for variant in config.variants:
        if variant == "ensemble_sessions":
            continue
        path = folder / f"{arch}_{variant}.onnx"
        start = time.perf_counter()
        if variant == "ensemble":
            members = [model]
            for index in range(1, config.ensemble_size):
                torch.manual_seed(config.seed + index)
                members.append(build_model(arch, **kwargs).eval())
            fused = FusedEnsemble(members, scores=VARIANTS[variant]["scores"]).eval()
            counts["ensemble"] = config.ensemble_size * int(trunk)
        else:
            fused, _ = make_fused(model, **VARIANTS[variant])
        export_onnx(fused, path, extra_meta={"bench_variant": variant})
        LOG.info(
            "bench: exported %s %s in %.1f s (%.0f MB)",
            arch,
            variant,
            time.perf_counter() - start,
            path.stat().st_size / 1e6,
        )
        exported[variant] = (path, fused)
    return exported, counts


class _Sequential:
    """``repeats`` runs of one backend in a row (the latency of M separately deployed models)."""

    def __init__(self, inner: Any, repeats: int) -> None:
        self.inner, self.repeats, self.name = inner, repeats, f"{inner.name} x{repeats}"

    def infer(self, images: np.ndarray) -> Any:
        for _ in range(self.repeats):
            result = self.inner.infer(images)
        return result

    def close(self) -> None:
        """The inner backend is closed by its owner."""


def _make(backend: str, path: Path, fused: Any, threads: int | None) -> Any:
    if backend == "torch":
        from moose_ros.backends.torch_backend import TorchBackend

        return TorchBackend(fused, threads=threads)
    from moose_ros.backends import make_backend

    return make_backend(backend, path, threads=threads)


def _available_backends(config: BenchConfig, probe: tuple[Path, Any], skipped: dict[str, str]) -> list[str]:
    """The backends to measure; unavailable ones land in ``skipped`` with the reason."""
    wanted = list(config.backends) if config.backends else ["tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"]
    usable = []
    for name in wanted:
        try:
            _make(name, probe[0], probe[1], config.threads).close()
        except BackendError as err:
            skipped[name] = str(err)
            LOG.info("bench: skipping backend %s: %s", name, err)
            continue
        usable.append(name)
    return usable


def _measure(backends: dict[str, Any], image: np.ndarray, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Interleaved timings (ms) of each backend on ``image``: warm-up, then ``repeats`` round-robin rounds."""
    names = list(backends)
    for _ in range(warmup):
        for name in names:
            backends[name].infer(image)
    runs: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            backends[name].infer(image)
            runs[name].append((time.perf_counter() - start) * 1e3)
    return runs


def run_benchmark(
    config: BenchConfig,
    *,
    progress: Callable[[str], None] | None = None,
    partial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark; returns the JSON-ready report (see :func:`format_markdown`).

    ``partial(report)`` is called after every measured size (e.g. to save what a long run has so far).
    """
    import onnxruntime
    import torch

    say = progress or LOG.info
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    report: dict[str, Any] = {
        "config": {**dataclasses.asdict(config), "workdir": None},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__,
        },
        "ensemble": f"'ensemble' = one ONNX graph holding {config.ensemble_size} independent global networks "
        f"(FusedEnsemble); 'ensemble_sessions' = the global graph run {config.ensemble_size} times in a row",
        "params": {},
        "results": [],
        "skipped_backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="moose_bench_") as tmp:
        folder = Path(config.workdir) if config.workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for arch in config.archs:
            say(f"{arch}: exporting {', '.join(config.variants)}")
            exported, counts = _export_variants(config, arch, folder)
            report["params"][arch] = counts
            first = next(iter(exported.values()))
            backends = _available_backends(config, first, report["skipped_backends"])
            for backend in backends:
                sessions = {v: _make(backend, path, fused, config.threads) for v, (path, fused) in exported.items()}
                if "ensemble_sessions" in config.variants:
                    sessions["ensemble_sessions"] = _Sequential(sessions["global"], config.ensemble_size)
                for h, w in config.sizes:
                    rng = np.random.default_rng(config.seed)
                    image = rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)
                    say(f"{arch} / {backend} / {h}x{w}: {config.repeats} interleaved rounds")
                    runs = _measure(sessions, image, config.repeats, config.warmup)
                    medians = {v: statistics.median(r) for v, r in runs.items()}
                    minima = {v: min(r) for v, r in runs.items()}
                    entry = {
                        "arch": arch,
                        "backend": backend,
                        "size": [h, w],
                        "median_ms": medians,
                        "min_ms": minima,
                        "runs_ms": runs,
                        "ratios": {name: medians[a] / medians[b] for name, a, b in RATIOS if a in runs and b in runs},
                        "ratios_of_min": {
                            name: minima[a] / minima[b] for name, a, b in RATIOS if a in runs and b in runs
                        },
                    }
                    report["results"].append(entry)
                    say(_entry_line(entry))
                    if partial is not None:
                        partial({**report, "targets": _check_targets(report), "partial": True})
                for session in sessions.values():
                    session.close()
        report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["targets"] = _check_targets(report)
    return report


def _entry_line(entry: dict[str, Any]) -> str:
    med = ", ".join(f"{v} {ms:.1f} ms" for v, ms in entry["median_ms"].items())
    ratios = ", ".join(f"{k} {r:.3f}" for k, r in entry["ratios"].items())
    return f"  {med}; {ratios}"


def _check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in report["results"]:
        if entry["backend"] != "onnxruntime-cpu":
            continue
        for ratio, arch, op, bound in TARGETS:
            if arch not in ("*", entry["arch"]) or ratio not in entry["ratios"]:
                continue
            if ratio.startswith("ensemble") and report["config"]["ensemble_size"] != 5:
                continue  # the target is stated for the paper's 5-member ensemble
            value = entry["ratios"][ratio]
            ok = value <= bound if op == "<=" else value >= bound
            out.append(
                {
                    "arch": entry["arch"],
                    "size": entry["size"],
                    "ratio": ratio,
                    "value": value,
                    "target": f"{op} {bound}",
                    "met": ok,
                    "miss": 0.0 if ok else abs(value - bound),
                }
            )
    return out


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one latency table per architecture and backend, parameters, targets."""
    lines = ["# Inference benchmark (median latency over interleaved runs)", ""]
    cfg = report["config"]
    lines.append(
        f"Repeats {cfg['repeats']} (+{cfg['warmup']} warm-up), threads {cfg['threads'] or 'runtime default'}, "
        f"batch 1, uint8 input, random weights; ensemble: {report['ensemble']}. "
        f"Machine: {report['machine']['cpu_count']} CPUs, ONNX Runtime {report['machine']['onnxruntime']}. "
        f"Model options: {cfg['model_kwargs'] or 'builder defaults'} (num_classes {cfg['num_classes']})."
    )
    lines.append("")
    variants = cfg["variants"]
    headers = [f"{v} ms" for v in variants] + [name for name, a, b in RATIOS if a in variants and b in variants]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in report["results"]:
        groups.setdefault((entry["arch"], entry["backend"]), []).append(entry)
    for (arch, backend), entries in groups.items():
        lines += [
            f"## {arch} — {backend}",
            "",
            "| size | " + " | ".join(headers) + " |",
            "|---" * (len(headers) + 1) + "|",
        ]
        for e in entries:
            cells = [f"{e['median_ms'][v]:.1f}" for v in variants]
            cells += [f"{e['ratios'][name]:.3f}" for name, a, b in RATIOS if a in variants and b in variants]
            lines.append(f"| {e['size'][0]}x{e['size'][1]} | " + " | ".join(cells) + " |")
        lines.append("")
        ratio_names = [name for name, a, b in RATIOS if a in variants and b in variants]
        per_size = [
            f"{e['size'][0]}x{e['size'][1]}: " + ", ".join(f"{n} {e['ratios_of_min'][n]:.3f}" for n in ratio_names)
            for e in entries
        ]
        lines += [
            "Ratios of the minimum latencies (less sensitive to load from other processes): " + "; ".join(per_size),
            "",
        ]
    lines += ["## Parameters", "", "| architecture | global | MOoSe (probes) | ensemble |", "|---|---|---|---|"]
    for arch, c in report["params"].items():
        ens = f"{c['ensemble'] / 1e6:.2f} M" if "ensemble" in c else "-"
        lines.append(
            f"| {arch} | {c['global'] / 1e6:.2f} M | {c['moose'] / 1e6:.2f} M ({c['probes'] / 1e6:.2f} M) | {ens} |"
        )
    lines.append("")
    if report["targets"]:
        lines += [
            "## Targets (ONNX Runtime CPU)",
            "",
            "| architecture | size | ratio | measured | target | met |",
            "|---|---|---|---|---|---|",
        ]
        for t in report["targets"]:
            met = "yes" if t["met"] else f"no (by {t['miss']:.3f})"
            lines.append(
                f"| {t['arch']} | {t['size'][0]}x{t['size'][1]} | {t['ratio']} | {t['value']:.3f} | "
                f"{t['target']} | {met} |"
            )
        lines.append("")
    for name, reason in report["skipped_backends"].items():
        lines.append(f"- skipped backend {name}: {reason.splitlines()[0]}")
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``bench_infer.json`` and ``bench_infer.md`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "bench_infer.json", out_dir / "bench_infer.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(format_markdown(report))
    return json_path, md_path


def parse_sizes(items: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """``["480x640", "720x1280"]`` (comma lists allowed) -> ((480, 640), (720, 1280))."""
    out = []
    for item in items:
        for text in item.split(","):
            out.append(parse_size(text, what="--sizes"))
    return tuple(out)
