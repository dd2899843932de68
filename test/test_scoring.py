"""Scores against values worked out by hand on tiny arrays (MOoSe Eq. 3-6), numpy and torch alike."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from moose_ros import scoring
from moose_ros.errors import ConfigError


def _pixel(values: list[float]) -> np.ndarray:
    """One pixel's logits as a [1, C, 1, 1] array."""
    return np.asarray(values, dtype=np.float64).reshape(1, -1, 1, 1)


def test_max_logit_averages_all_heads_before_the_max() -> None:
    g, p1, p2 = _pixel([3.0, 1.0]), _pixel([0.0, 4.0]), _pixel([0.0, 1.0])
    # mean logits = [1, 2] -> max 2 -> score -2; the max of each head separately would differ (3, 4, 1).
    assert scoring.max_logit([g, p1, p2])[0, 0, 0] == pytest.approx(-2.0)
    assert scoring.max_logit(g)[0, 0, 0] == pytest.approx(-3.0)


def test_msp_and_entropy_use_the_mean_of_softmaxes() -> None:
    g, p = _pixel([math.log(3.0), 0.0]), _pixel([0.0, math.log(3.0)])
    # softmax(g) = [3/4, 1/4], softmax(p) = [1/4, 3/4] -> mean [1/2, 1/2].
    assert scoring.msp([g, p])[0, 0, 0] == pytest.approx(-0.5)
    assert scoring.entropy([g, p])[0, 0, 0] == pytest.approx(math.log(2.0))
    # Global head alone: MSP -3/4, entropy of [3/4, 1/4].
    assert scoring.msp(g)[0, 0, 0] == pytest.approx(-0.75)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert scoring.entropy(g)[0, 0, 0] == pytest.approx(h)


def test_mutual_information_is_disagreement_between_heads() -> None:
    g, p = _pixel([math.log(3.0), 0.0]), _pixel([0.0, math.log(3.0)])
    h_each = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert scoring.mutual_information([g, p])[0, 0, 0] == pytest.approx(math.log(2.0) - h_each)
    assert scoring.mutual_information([g, g])[0, 0, 0] == pytest.approx(0.0, abs=1e-12)


def test_energy_is_negative_logsumexp_of_mean_logits() -> None:
    g, p = _pixel([1.0, 3.0]), _pixel([3.0, 1.0])
    assert scoring.energy([g, p])[0, 0, 0] == pytest.approx(-math.log(2 * math.e**2))


def test_k_plus_one_average_over_five_heads() -> None:
    rng = np.random.default_rng(0)
    heads = [rng.normal(size=(2, 4, 3, 5)) for _ in range(5)]
    mean = sum(heads) / 5
    np.testing.assert_allclose(scoring.max_logit(heads), -mean.max(axis=1))
    probs = [np.exp(h) / np.exp(h).sum(axis=1, keepdims=True) for h in heads]
    mean_p = sum(probs) / 5
    np.testing.assert_allclose(scoring.msp(heads), -mean_p.max(axis=1))
    np.testing.assert_allclose(scoring.entropy(heads), -(mean_p * np.log(mean_p)).sum(axis=1))


def test_higher_means_more_anomalous() -> None:
    confident, unsure = _pixel([10.0, 0.0, 0.0]), _pixel([0.1, 0.0, 0.05])
    for name in scoring.SCORE_NAMES:
        if name == "mutual_information":
            continue  # single head: always 0
        assert scoring.compute_score(name, unsure) > scoring.compute_score(name, confident), name


def test_torch_and_numpy_agree() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    heads = [rng.normal(size=(1, 6, 4, 4)).astype(np.float32) for _ in range(3)]
    for name in scoring.SCORE_NAMES:
        expected = scoring.compute_score(name, heads)
        got = scoring.compute_score(name, [torch.from_numpy(h) for h in heads])
        assert isinstance(got, torch.Tensor)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_unknown_score_names_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="max_logit"):
        scoring.compute_score("maxlogit", _pixel([1.0]))
    with pytest.raises(ConfigError, match="empty"):
        scoring.max_logit([])


def test_importing_scoring_pulls_in_neither_torch_nor_rclpy() -> None:
    code = "import sys, moose_ros.scoring; print('torch' in sys.modules, 'rclpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_softmax_scores_stay_finite_in_half_precision() -> None:
    torch = pytest.importorskip("torch")
    # A confident pixel: the minority probabilities underflow in fp16.
    z = torch.tensor([[30.0, 0.0, -30.0]]).reshape(1, 3, 1, 1)
    for name in ("entropy", "mutual_information", "msp"):
        full = scoring.compute_score(name, [z, z * 0.5])
        half = scoring.compute_score(name, [z.half(), (z * 0.5).half()])
        assert torch.isfinite(half).all(), name
        assert float(half) == pytest.approx(float(full), abs=2e-3), name
