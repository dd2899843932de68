"""Score functions for :func:`moose_ros.eval.evaluate_ood`: torch checkpoints and exported ONNX graphs.

:class:`TorchMooseScorer` runs a MOoSe network **once** per image and derives both rows of the paper's Table 1
from the same forward pass: ``Global`` (global head alone, M = 1) and ``MOoSe`` (global head + K probes). The
post-processing is the fused graph's own (:meth:`moose_ros.export.FusedMoose.postprocess_heads`: scores at the
feature resolution and labels at the network input size, then single-channel maps upsampled;
``score_resolution="input"`` or ``"full"`` (exact)) so offline numbers are the numbers of the deployed graph; the
Global row's SML uses the global head's own statistics. torch is imported when a scorer is built.

:class:`OnnxScorer` evaluates exported graphs through :func:`moose_ros.backends.make_backend`: one ONNX file per
method (e.g. a ``heads="global"`` export for Global and the default export for MOoSe); every score baked into a
graph becomes a key ``"<method>/<score>"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from moose_ros.contract import DEFAULT_SCORE_RESOLUTION
from moose_ros.errors import ConfigError

__all__ = ["DEFAULT_SCORES", "OnnxScorer", "TorchMooseScorer"]

#: The paper's Table 1 scores.
DEFAULT_SCORES: tuple[str, ...] = ("max_logit", "entropy", "msp")


class TorchMooseScorer:
    """Global and MOoSe score maps from one forward pass of a MOoSe network (torch).

    Args:
        checkpoint_or_model: checkpoint path (``.pt``, loaded with ``moose_ros.model.load_checkpoint``) or a MOoSe
            ``nn.Module`` (``model(x) -> {"out", "probes"}``).
        scores: score names (``moose_ros.scoring.SCORE_NAMES``).
        score_resolution: ``"feature"`` (the fused graph default), ``"input"`` or ``"full"``.
        input_size: (H, W) the image is resized to before the network, ``"checkpoint"``, or None (native size).
        device: torch device string, e.g. ``"cpu"`` or ``"cuda"``.
        methods: which rows to produce, subset of ``("Global", "MOoSe")``.
        boundary, road_classes: the graph's boundary suppression and road gate (``<score>_road`` keys), as
            :func:`moose_ros.export.make_fused`.
    """

    def __init__(
        self,
        checkpoint_or_model: Any,
        *,
        scores: Sequence[str] = DEFAULT_SCORES,
        score_resolution: str = DEFAULT_SCORE_RESOLUTION,
        input_size: Sequence[int] | str | None = None,
        device: str = "cpu",
        methods: Sequence[str] = ("Global", "MOoSe"),
        boundary: Any = None,
        road_classes: Sequence[int | str] | None = None,
    ) -> None:
        import torch

        from moose_ros.export import make_fused
        from moose_ros.export.onnx_export import sml_from_meta

        for method in methods:
            if method not in ("Global", "MOoSe"):
                raise ConfigError(f"TorchMooseScorer: method '{method}' is unknown; allowed: Global, MOoSe")
        self.torch = torch
        self.device = torch.device(device)
        self.fused, self.checkpoint_meta = make_fused(
            checkpoint_or_model, scores=tuple(scores), input_size=input_size, score_resolution=score_resolution,
            boundary=boundary, road_classes=road_classes,
        )
        self.fused.to(self.device).eval()
        self.scores = tuple(self.fused.scores)
        self.methods = tuple(methods)
        self.num_probes = int(getattr(self.fused.model, "num_probes", 0))
        # the global head alone is standardised with its own statistics
        self._global_sml = sml_from_meta(self.checkpoint_meta, "global") if "sml" in self.scores else None

    @property
    def keys(self) -> list[str]:
        """Output keys in order: ``"<method>/<score>"``."""
        return [f"{m}/{s}" for m in self.methods for s in self.scores]

    def head_logits(self, image: np.ndarray) -> list[Any]:
        """float32 torch logits [1, C, h, w] of every head (global first) for one uint8 [H, W, 3] image."""
        torch = self.torch
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(image)[None]).to(self.device)
            return self.fused.head_logits(self.fused.preprocess(t))

    def outputs(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Score maps plus ``"labels"`` (uint8 [H, W], global head) for one image uint8 [H, W, 3] RGB."""
        torch = self.torch
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ConfigError(
                f"TorchMooseScorer: expected a uint8 [H, W, 3] RGB image, got {image.dtype} {image.shape}"
            )
        out: dict[str, np.ndarray] = {}
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(image)[None]).to(self.device)
            x = self.fused.preprocess(t)
            heads = self.fused.head_logits(x)
            for method in self.methods:
                used, sml = (heads[:1], self._global_sml) if method == "Global" else (heads, None)
                labels, maps = self.fused.postprocess_heads(used, image.shape[:2], (x.shape[2], x.shape[3]), sml=sml)
                out.setdefault("labels", labels[0].cpu().numpy())
                for name in self.scores:
                    out[f"{method}/{name}"] = maps[name][0].float().cpu().numpy()
        return out

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """:data:`moose_ros.eval.ScoreFn`: ``{"<method>/<score>": float32 [H, W]}`` for a uint8 [H, W, 3] image."""
        out = self.outputs(image)
        out.pop("labels")
        return out

    def head_probs(self, image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(labels uint8 [H, W] of the global head, per-head softmax float32 [M, C, H, W]) at ``size`` = (H, W).

        Every head's logits are bilinearly upsampled to ``size`` before the softmax. Memory: M * C * H * W * 4
        bytes (5 heads, 19 classes, 2048x1024: ~0.8 GB).
        """
        torch = self.torch
        import torch.nn.functional as F

        with torch.inference_mode():
            heads = self.head_logits(image)
            probs = []
            for h in heads:
                up = F.interpolate(h, size=tuple(size), mode="bilinear", align_corners=False)
                probs.append(torch.softmax(up, dim=1)[0])
            stacked = torch.stack(probs)
            labels = stacked[0].argmax(dim=0).to(torch.uint8)
            return labels.cpu().numpy(), stacked.float().cpu().numpy()


class OnnxScorer:
    """Score maps from exported fused graphs, one graph per method.

    Args:
        models: {method: path to ``.onnx``}, e.g. ``{"Global": "g.onnx", "MOoSe": "m.onnx"}``.
        backend: ``make_backend`` name (default ``"onnxruntime-cpu"``).
        threads: CPU threads for the backend, or None.
    """

    def __init__(
        self,
        models: Mapping[str, str | os.PathLike[str]],
        *,
        backend: str = "onnxruntime-cpu",
        threads: int | None = None,
    ) -> None:
        from moose_ros.backends import make_backend

        if not models:
            raise ConfigError("OnnxScorer: give at least one {method: model.onnx}")
        self.backends = {m: make_backend(backend, p, threads=threads) for m, p in models.items()}

    @property
    def metas(self) -> dict[str, Any]:
        """{method: ModelMeta} of the loaded graphs."""
        return {m: b.meta for m, b in self.backends.items()}

    def __call__(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """:data:`moose_ros.eval.ScoreFn` over all graphs: ``{"<method>/<score>": float32 [H, W]}``."""
        out: dict[str, np.ndarray] = {}
        batch = np.ascontiguousarray(image)[None]
        for method, backend in self.backends.items():
            result = backend.infer(batch)
            for name in backend.meta.scores:
                out[f"{method}/{name}"] = result.score(name)[0]
        return out

    def close(self) -> None:
        """Release the backends."""
        for backend in self.backends.values():
            backend.close()
