"""``moose bench infer`` end to end on a toy configuration: real exports, real ONNX Runtime sessions, report files."""

from __future__ import annotations

import argparse
import json

import pytest

from moose_ros.bench.infer import BenchConfig, format_markdown, run_benchmark
from moose_ros.errors import ConfigError
from moose_ros.tools import bench


def test_bench_infer_cli_writes_consistent_report(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        [
            "infer",
            "--archs",
            "deeplabv3_mobilenet_v3_large",
            "--sizes",
            "48x64",
            "--repeats",
            "2",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--ensemble-size",
            "2",
            "--probe-width",
            "8",
            "--out",
            str(tmp_path / "out"),
            "--backends",
            "onnxruntime-cpu,tensorrt",
        ]
    )
    assert bench.run(args) == 0
    report = json.loads((tmp_path / "out" / "bench_infer.json").read_text())
    markdown = (tmp_path / "out" / "bench_infer.md").read_text()
    assert "| 48x64 |" in markdown and "moose/global" in capsys.readouterr().out
    (entry,) = report["results"]
    assert entry["backend"] == "onnxruntime-cpu" and entry["size"] == [48, 64]
    assert set(entry["median_ms"]) == {
        "global",
        "moose",
        "moose_entropy_feature",
        "moose_entropy_full",
        "ensemble",
        "ensemble_sessions",
    }
    assert all(len(runs) == 2 and min(runs) > 0 for runs in entry["runs_ms"].values())
    med = entry["median_ms"]
    assert entry["ratios"]["moose/global"] == pytest.approx(med["moose"] / med["global"])
    assert entry["ratios"]["ensemble/moose"] == pytest.approx(med["ensemble"] / med["moose"])
    assert entry["ratios_of_min"]["moose/global"] == pytest.approx(
        min(entry["runs_ms"]["moose"]) / min(entry["runs_ms"]["global"])
    )
    params = report["params"]["deeplabv3_mobilenet_v3_large"]
    assert params["ensemble"] == 2 * params["global"] and params["moose"] == params["global"] + params["probes"] > 0
    assert "tensorrt" in report["skipped_backends"] and "not installed" in report["skipped_backends"]["tensorrt"]
    # The ensemble target is stated for 5 members only; the MOoSe/global target is checked on ORT CPU.
    assert [t["ratio"] for t in report["targets"]] == ["moose/global"]


def test_bench_config_rejects_unknown_variant():
    with pytest.raises(ConfigError, match="variants"):
        BenchConfig(variants=("global", "fastest"))


def test_markdown_of_empty_report_lists_skips():
    config = BenchConfig(archs=(), backends=("tensorrt",))
    text = format_markdown(run_benchmark(config))
    assert text.startswith("# Inference benchmark")


def test_moose_before_only_when_asked_and_only_in_a_git_checkout(tmp_path):
    """The old-graph comparison needs --baseline-rev; outside a git checkout (a pip or colcon install) it is refused
    with the reason, and every other variant works there."""
    import shutil
    import subprocess
    import sys

    from test_bad_input_common import REPO, assert_refused

    ckpt = REPO / "models" / "moose_synthstreet.pt"
    base = ["bench", "infer", "--checkpoint", str(ckpt), "--sizes", "32x64", "--repeats", "1", "--warmup", "0",
            "--threads", "1", "--backends", "onnxruntime-cpu", "--out", "out"]
    installed = tmp_path / "site"
    shutil.copytree(REPO / "moose_ros", installed / "moose_ros", ignore=shutil.ignore_patterns("__pycache__"))

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "moose_ros.cli", *base, *extra], cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(installed), "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True, timeout=600)

    assert_refused(run("--variants", "moose_before"), "give --baseline-rev REV")
    assert_refused(run("--variants", "moose_before", "--baseline-rev", "79fad82"), "is not a git checkout")
    done = run("--variants", "global,moose")
    assert done.returncode == 0 and "moose/global" in done.stdout, done.stdout + done.stderr
