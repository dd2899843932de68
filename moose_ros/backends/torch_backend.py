"""Torch backend: the eager reference — the same :class:`~moose_ros.export.fused.FusedMoose` that gets exported.

Built from a checkpoint (``.pt``). Runs on CUDA (float16 network, float32 scoring) when a GPU is present,
otherwise on the CPU in float32. torch is imported only when this backend is made.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moose_ros.backends.base import ModelMeta, Result, validate_images
from moose_ros.errors import BackendError

__all__ = ["TorchBackend"]

LOG = logging.getLogger(__name__)


class TorchBackend:
    """Runs the fused graph eagerly in torch.

    Args:
        checkpoint_or_fused: a checkpoint path (``.pt``, :func:`moose_ros.model.load_checkpoint`), a MOoSe network
            or a ready :class:`~moose_ros.export.fused.FusedMoose`.
        device: ``"cuda"``, ``"cpu"`` or None (CUDA when available).
        fp16: run the network in float16 on CUDA (ignored on the CPU).
        threads: torch intra-op threads on the CPU (None: torch's default).
        scores, input_size, output_size, score_resolution, heads: as :class:`~moose_ros.export.fused.FusedMoose`
            (ignored when a ready FusedMoose is passed).
    """

    def __init__(
        self,
        checkpoint_or_fused: str | os.PathLike[str] | Any,
        *,
        device: str | None = None,
        fp16: bool = True,
        threads: int | None = None,
        scores: Sequence[str] = ("max_logit",),
        input_size: Sequence[int] | str | None = None,
        output_size: Sequence[int] | None = None,
        score_resolution: str = "feature",  # the export default (moose_ros.export.postprocess.DEFAULT_RESOLUTION)
        heads: str = "moose",
    ) -> None:
        try:
            import torch
        except ImportError as err:
            raise BackendError(
                f"torch backend: torch is not installed: pip install 'moose_ros[train]' ({err})"
            ) from err
        from moose_ros.export.onnx_export import build_model_meta, make_fused

        if isinstance(checkpoint_or_fused, (str, os.PathLike)):
            path = Path(checkpoint_or_fused)
            if path.suffix == ".onnx":
                raise BackendError(
                    f"torch backend: '{path}' is an ONNX graph; the torch backend needs a checkpoint (.pt)"
                )
            if not path.is_file():
                raise BackendError(f"torch backend: checkpoint '{path}' does not exist")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device not in ("cpu", "cuda"):
            raise BackendError(f"torch backend: device '{device}' is unknown; allowed values: cpu, cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch backend: device 'cuda' asked for but torch sees no CUDA GPU")
        if threads is not None:
            if threads < 1:
                raise BackendError(f"torch backend: threads must be >= 1 or None, got {threads}")
            torch.set_num_threads(int(threads))
        fused, ckpt_meta = make_fused(
            checkpoint_or_fused,
            scores=scores,
            input_size=input_size,
            output_size=output_size,
            score_resolution=score_resolution,
            heads=heads,
        )
        self.meta: ModelMeta = build_model_meta(fused, ckpt_meta)
        self.fp16 = bool(fp16 and device == "cuda")
        fused = fused.to(device).eval()
        if self.fp16:
            fused = fused.half()
        self._fused = fused
        self._torch = torch
        self.device = device
        self.name = f"torch-{device}"
        LOG.debug("%s: %s (fp16=%s)", self.name, self.meta.architecture, self.fp16)

    def infer(self, images: np.ndarray) -> Result:
        """Run the fused graph on uint8 [N, H, W, 3] RGB images; see :class:`~moose_ros.backends.base.Result`."""
        torch = self._torch
        images = validate_images(images, backend=self.name)
        start = time.perf_counter()
        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device)
            outputs = [t.cpu().numpy() for t in self._fused(x)]
        elapsed_ms = (time.perf_counter() - start) * 1e3
        extra = dict(zip(self.meta.scores[1:], outputs[2:], strict=True))
        return Result(labels=outputs[0], anomaly=outputs[1], extra_scores=extra, timings_ms={"infer": elapsed_ms},
            first_score=self.meta.scores[0],
        )

    @property
    def fused(self) -> Any:
        """The :class:`~moose_ros.export.fused.FusedMoose` this backend runs."""
        return self._fused

    def close(self) -> None:
        """Drop the module (and free CUDA memory it held)."""
        self._fused = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()
