"""Per-pixel anomaly scores over the global head and the K probes (MOoSe, Eq. 3-6).

Every function takes ``heads``: a sequence of M = K + 1 logit arrays, each float [N, C, H, W] with the class
axis at 1 (the global head first, then the probes), or a single such array (M = 1, the plain global score).
Arrays may be numpy arrays or torch tensors; the result has the same kind, float [N, H, W].
All scores follow one convention: **higher = more anomalous**.

The math is written with explicit exp/sum (no stacked 5-D softmax) so that the same code runs eagerly, traces
into a fast ONNX graph, and keeps 4-D layouts throughout. Importing this module imports neither torch nor rclpy:
torch is only touched when a torch tensor is passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from moose_ros.errors import ConfigError

__all__ = [
    "GRAPH_SCORES",
    "SCORE_NAMES",
    "compute_score",
    "energy",
    "entropy",
    "max_logit",
    "mean_logits",
    "mean_probs",
    "msp",
    "mutual_information",
    "softmax",
]

Array = Any  # numpy.ndarray or torch.Tensor, float [N, C, H, W] unless stated otherwise

#: Smallest probability used inside logarithms in float32/float64 (keeps 0 * log 0 == 0).
_EPS = 1e-12
#: The same floor for float16/bfloat16, where 1e-12 underflows to 0 and log(0) * 0 would give NaN.
_EPS_HALF = 6.2e-5


def _is_torch(x: Array) -> bool:
    return type(x).__module__.startswith("torch")


def _as_heads(heads: Array | Sequence[Array]) -> list[Array]:
    if isinstance(heads, (list, tuple)):
        if len(heads) == 0:
            raise ConfigError("scoring: 'heads' is empty; expected the global head and K >= 0 probes")
        return list(heads)
    return [heads]


def _over_class_slices(x: Array, combine: Callable[[Any, Any], Any], keepdims: bool) -> Array:
    """Reduce the class axis of a 4-D torch tensor by an elementwise chain over its [N, H, W] slices.

    ONNX Runtime's CPU ReduceMax / ReduceSum over axis 1 of NCHW are ~5x slower than elementwise Max / Add over
    the channel slices (measured, 19 x 192 x 384); TensorRT runs either well. The traced graph is Split + a chain.
    """
    slices = x.unbind(1)
    out = slices[0]
    for item in slices[1:]:
        out = combine(out, item)
    return out.unsqueeze(1) if keepdims else out


def _amax(x: Array, axis: int, keepdims: bool = False) -> Array:
    if _is_torch(x):
        if axis == 1 and x.dim() == 4:
            return _over_class_slices(x, lambda a, b: a.maximum(b), keepdims)
        return x.amax(dim=axis, keepdim=keepdims)
    return np.max(x, axis=axis, keepdims=keepdims)


def _sum(x: Array, axis: int, keepdims: bool = False) -> Array:
    if _is_torch(x):
        if axis == 1 and x.dim() == 4:
            return _over_class_slices(x, lambda a, b: a + b, keepdims)
        return x.sum(dim=axis, keepdim=keepdims)
    return np.sum(x, axis=axis, keepdims=keepdims)


def _exp(x: Array) -> Array:
    return x.exp() if _is_torch(x) else np.exp(x)


def _log(x: Array) -> Array:
    return x.log() if _is_torch(x) else np.log(x)


def _clamp_min(x: Array, low: float) -> Array:
    return x.clamp_min(low) if _is_torch(x) else np.maximum(x, low)


def _mean(items: list[Array]) -> Array:
    total = items[0]
    for item in items[1:]:
        total = total + item
    return total / float(len(items)) if len(items) > 1 else total


def softmax(logits: Array, axis: int = 1) -> Array:
    """Numerically stable softmax along ``axis`` (default: the class axis of [N, C, H, W])."""
    shifted = logits - _amax(logits, axis, keepdims=True)
    e = _exp(shifted)
    return e / _sum(e, axis, keepdims=True)


def mean_logits(heads: Array | Sequence[Array]) -> Array:
    """Mean of the heads' logits, float [N, C, H, W]. Commutes with bilinear upsampling."""
    return _mean(_as_heads(heads))


def mean_probs(heads: Array | Sequence[Array]) -> Array:
    """Mean of the heads' softmax distributions, float [N, C, H, W]."""
    return _mean([softmax(h) for h in _as_heads(heads)])


def _log_floor(p: Array) -> float:
    itemsize = p.element_size() if _is_torch(p) else p.dtype.itemsize
    return _EPS_HALF if itemsize <= 2 else _EPS


def _entropy_of(p: Array) -> Array:
    return -_sum(p * _log(_clamp_min(p, _log_floor(p))), 1)


def max_logit(heads: Array | Sequence[Array]) -> Array:
    """Eq. (5): negative max over classes of the mean logits, float [N, H, W]."""
    return -_amax(mean_logits(heads), 1)


def msp(heads: Array | Sequence[Array]) -> Array:
    """Eq. (3): negative max over classes of the mean softmax probability, float [N, H, W] in [-1, -1/C]."""
    return -_amax(mean_probs(heads), 1)


def entropy(heads: Array | Sequence[Array]) -> Array:
    """Eq. (4): entropy (nats) of the mean softmax distribution, float [N, H, W] in [0, log C]."""
    return _entropy_of(mean_probs(heads))


def mutual_information(heads: Array | Sequence[Array]) -> Array:
    """Eq. (6): H[mean_m p_m] - mean_m H[p_m] over all given heads (nats), float [N, H, W], >= 0.

    With a single head this is identically 0 (no disagreement to measure).
    """
    probs = [softmax(h) for h in _as_heads(heads)]
    return _entropy_of(_mean(probs)) - _mean([_entropy_of(p) for p in probs])


def energy(heads: Array | Sequence[Array]) -> Array:
    """Negative free energy of the mean logits, ``-logsumexp_c(mean z)``, float [N, H, W]."""
    z = mean_logits(heads)
    top = _amax(z, 1, keepdims=True)
    lse = _log(_sum(_exp(z - top), 1)) + _amax(z, 1)
    return -lse


_SCORES: dict[str, Callable[[Any], Array]] = {
    "max_logit": max_logit,
    "entropy": entropy,
    "msp": msp,
    "mutual_information": mutual_information,
    "energy": energy,
}

#: Names accepted by :func:`compute_score`, the export ``--score`` option and the node's ``score`` parameter.
SCORE_NAMES: tuple[str, ...] = tuple(_SCORES)
#: Every score a fused graph can export: :data:`SCORE_NAMES` plus ``"sml"`` (standardised max-logit, which needs
#: per-class statistics and is computed by :func:`moose_ros.export.postprocess.postprocess`).
GRAPH_SCORES: tuple[str, ...] = (*SCORE_NAMES, "sml")


def compute_score(name: str, heads: Array | Sequence[Array]) -> Array:
    """Score ``name`` (one of :data:`SCORE_NAMES`) of ``heads``; float [N, H, W], higher = anomalous."""
    try:
        fn = _SCORES[name]
    except KeyError:
        raise ConfigError(f"score '{name}' is unknown; allowed values: {', '.join(SCORE_NAMES)}") from None
    return fn(heads)
