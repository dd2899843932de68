"""The contract between ``moose export`` and every consumer of its graph: what the fused ONNX file carries.

A fused graph takes ``image`` uint8 [N, H, W, 3] RGB and returns ``labels`` uint8 [N, H', W'] and ``anomaly``
float32 [N, H', W'] (plus ``anomaly_<score>`` for every further exported score); a :class:`ModelMeta` rides along as
JSON in the ONNX ``metadata_props`` under :data:`META_KEY`. ``moose_ros.export`` writes it; ``moose_ros.backends``,
the node's model check and the tools read it; a backend returns a :class:`Result`. This module is the one place
these are defined; it imports numpy only (no torch, no onnx, no rclpy).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from moose_ros.errors import BackendError
from moose_ros.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DEFAULT_SCORE_RESOLUTION", "META_KEY", "ModelMeta", "Result", "check_image_input", "meta_from_props"]

#: Where ``moose export`` computes scores unless told otherwise (``ModelMeta.score_resolution``).
DEFAULT_SCORE_RESOLUTION = "feature"

#: Key of the JSON-encoded :class:`ModelMeta` in the ONNX model's ``metadata_props``.
META_KEY = "moose_meta"


@dataclass(frozen=True)
class ModelMeta:
    """What a backend (and the node) needs to know about an exported model.

    Attributes:
        architecture: builder name, e.g. ``"deeplabv3_mobilenet_v3_large"``.
        classes: class names, index = train id.
        colors: RGB uint8 triplets, one per class (the segmentation palette).
        ignore_index: label value that marks void pixels in training data (e.g. 255).
        mean, std: per-channel RGB normalisation applied to images scaled to [0, 1].
        scores: exported anomaly scores; ``scores[0]`` is the ``anomaly`` output, the rest are
            ``anomaly_<name>`` outputs. Higher = more anomalous.
        score_resolution: where labels and scores were computed before single-channel maps were upsampled to
            the output size: ``"feature"`` (scores at feature resolution, labels at the network input size),
            ``"input"`` (both at the network input size) or ``"full"`` (at the output size: exact).
            See :func:`moose_ros.export.postprocess.postprocess`.
        input_size: (H, W) the graph resizes images to before the network, or None (native size).
        output_size: (H, W) of the outputs, or None (same as the input image).
        num_probes: K, the number of probe heads aggregated with the global head (0 = global only).
        extra: free-form checkpoint meta (recipe, metrics, ...), JSON-serialisable.
    """

    architecture: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_index: int = 255
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    scores: tuple[str, ...] = ("max_logit",)
    score_resolution: str = DEFAULT_SCORE_RESOLUTION
    input_size: tuple[int, int] | None = None
    output_size: tuple[int, int] | None = None
    num_probes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialise to the JSON string stored in the ONNX metadata."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, *, source: str = "<string>") -> ModelMeta:
        """Parse the JSON written by :meth:`to_json`; ``source`` names the file in error messages."""
        try:
            raw = json.loads(text)
            raw["classes"] = tuple(raw["classes"])
            raw["colors"] = tuple(tuple(int(v) for v in c) for c in raw["colors"])
            raw["mean"] = tuple(float(v) for v in raw["mean"])
            raw["std"] = tuple(float(v) for v in raw["std"])
            raw["scores"] = tuple(raw["scores"])
            for key in ("input_size", "output_size"):
                if raw.get(key) is not None:
                    raw[key] = (int(raw[key][0]), int(raw[key][1]))
            return cls(**raw)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise BackendError(f"{source}: metadata '{META_KEY}' is not a valid model description: {err}") from err

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return len(self.classes)


@dataclass
class Result:
    """One batch of inference output.

    Attributes:
        labels: uint8 [N, H', W'] argmax of the global head (train ids).
        anomaly: float32 [N, H', W'] the graph's ``anomaly`` output: its FIRST exported score, named
            ``first_score`` (not necessarily max-logit; higher = more anomalous).
        extra_scores: further exported scores by name, each float32 [N, H', W'].
        timings_ms: wall-clock milliseconds per stage, at least ``"infer"``.
        first_score: the name of the score in ``anomaly``.

    :meth:`score` looks any exported score up by name.
    """

    labels: np.ndarray
    anomaly: np.ndarray
    extra_scores: dict[str, np.ndarray] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    first_score: str = ""

    def score(self, name: str) -> np.ndarray:
        """The exported score ``name``, float32 [N, H', W'] (KeyError naming the exported ones if absent)."""
        if name in self.extra_scores:
            return self.extra_scores[name]
        if name == self.first_score:
            return self.anomaly
        raise KeyError(f"score '{name}' is not among the outputs {[self.first_score, *self.extra_scores]}")


def meta_from_props(props: dict[str, str], *, source: str) -> ModelMeta:
    """Parse the ``moose_meta`` entry of an ONNX ``metadata_props`` mapping; ``source`` names the file."""
    text = props.get(META_KEY)
    if text is None:
        raise BackendError(
            f"{source}: ONNX metadata has no '{META_KEY}' entry; export the model with `moose export` "
            f"(found keys: {sorted(props) or 'none'})"
        )
    return ModelMeta.from_json(text, source=source)


def check_image_input(name: str, dtype: str, shape: Sequence[Any], *, backend: str, source: str) -> None:
    """Refuse a graph whose input breaks the fused-graph contract ``image`` uint8 [N, H, W, 3] at load time
    (a float-input graph would otherwise load and fail only at the first frame).

    Args:
        name, dtype, shape: the graph input's name, element type name (``"uint8"``, ``"float"``, ...) and dims
            (ints for static axes, anything else for dynamic ones).

    Raises:
        BackendError: naming the file, the input as found and the contract.
    """
    dims = list(shape)
    last = dims[-1] if dims else None
    if dtype != "uint8" or len(dims) != 4 or (isinstance(last, int) and last != 3):
        shown = "[" + ", ".join(str(d) for d in dims) + "]"
        raise BackendError(f"{backend}: '{source}' takes input '{name}' {dtype} {shown}; a moose_ros graph takes "
                           "uint8 [N, H, W, 3] RGB images (export it with `moose export`)")
