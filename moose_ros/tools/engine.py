"""``moose engine build``: build and cache a fused graph's TensorRT engine ahead of deployment.

The node builds the engine on its first start when none is cached (minutes on a Jetson). Building it here first,
on the target machine, makes the node's start a cache hit. The engine and the TensorRT timing cache are written to
the engine cache folder (``--cache-dir``, default ``$MOOSE_CACHE_DIR/tensorrt`` or ``~/.cache/moose_ros/tensorrt``),
keyed by the ONNX file's hash, the TensorRT version, the GPU, the precision and the shape profile; the node finds
them when it runs with the same model, ``max_pixels`` and cache folder.

Examples::

    moose engine build models/moose_synthstreet.onnx               # fp16 where the GPU has fast fp16
    moose engine build models/moose_synthstreet.onnx --fp32 --max-pixels 2073600 --cache-dir /var/cache/moose
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "build and cache the TensorRT engine of a fused ONNX graph ahead of deployment"

#: Seconds between progress lines while an engine builds.
PROGRESS_EVERY_S = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moose engine``."""
    sub = parser.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build (or find in the cache) the engine of MODEL.onnx", description=HELP)
    build.add_argument("model", type=Path, help="fused graph written by `moose export` (.onnx)")
    precision = build.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="fp16", action="store_true", default=True,
                           help="float16 where the GPU runs it fast (default; inputs/outputs stay uint8/float32)")
    precision.add_argument("--fp32", dest="fp16", action="store_false", help="float32 throughout (TF32 off)")
    build.add_argument("--cache-dir", type=Path, default=None, help="engine + timing cache folder (default: the "
                       "node's, $MOOSE_CACHE_DIR/tensorrt or ~/.cache/moose_ros/tensorrt)")
    build.add_argument("--max-pixels", type=int, default=None,
                       help="most pixels per image the engine must accept (default: the node's max_pixels default)")
    build.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")


def run(args: argparse.Namespace) -> int:
    """Build or load the engine, run its self-check, and say where it is cached."""
    from moose_ros.backends.tensorrt import DEFAULT_MAX_PIXELS, TensorRTBackend, default_cache_dir
    from moose_ros.errors import ConfigError
    from moose_ros.progress import run_with_progress

    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    if max_pixels < 1:
        raise ConfigError(f"--max-pixels must be a positive number of pixels, got {max_pixels}")
    cache_dir = args.cache_dir if args.cache_dir is not None else default_cache_dir()
    start = time.monotonic()
    backend = run_with_progress(
        lambda: TensorRTBackend(args.model, fp16=args.fp16, cache_dir=cache_dir, device=args.device,
                                max_pixels=max_pixels),
        lambda seconds: print(f"building engine for {args.model} ... ({seconds:.0f} s)", file=sys.stderr, flush=True),
        PROGRESS_EVERY_S,
    )
    try:
        print(f"engine ready in {time.monotonic() - start:.1f} s: {args.model}, precision {backend.precision}, "
              f"profile {backend.profile}, cache {cache_dir}")
    finally:
        backend.close()
    return 0
