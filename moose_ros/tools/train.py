"""``moose train``: train a MOoSe network from a YAML recipe (stages base | probes | refit).

Multi-GPU / multi-node: start it with ``torchrun --nproc_per_node=N -m moose_ros.cli train ...``; rank and
world size come from torchrun's environment.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

HELP = "train a MOoSe network: base segmentation, probes on the frozen network, or the global refit baseline"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``moose train`` options to ``parser``."""
    parser.add_argument("--config", required=True, help="YAML training recipe, e.g. configs/synthstreet_base.yaml")
    parser.add_argument("--stage", default="base", choices=("base", "probes", "refit"),
                        help="base: full network; probes: MOoSe probes on the frozen network; refit: fair "
                             "Global-refit baseline (default: base)")
    parser.add_argument("--data", default=None, help="dataset root (overrides data.root)")
    parser.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    parser.add_argument("--init", default=None, help="checkpoint to start from (probes/refit default: OUT/base.pt)")
    parser.add_argument("--resume", default=None, help="continue from OUT/<stage>_last.pt of an interrupted run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set probes.lr=0.02 --set seed=1 (repeatable)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("--halt-at", type=int, default=None, metavar="STEP",
                        help="stop after STEP steps leaving a resumable OUT/<stage>_last.pt (continue with --resume)")


def _check_options(args: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` for an option out of range or an unusable path, before any work starts."""
    from moose_ros.errors import ConfigError
    from moose_ros.outputs import check_output_dir

    for option, value in (("--halt-at", args.halt_at), ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be >= 1, got {value}")
    check_output_dir(args.out, "--out")
    for option, path in (("--init", args.init), ("--resume", args.resume)):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{option} {path}: no such checkpoint file")


def _check_inputs(cfg: Any, args: argparse.Namespace) -> None:
    """Open the stage's datasets and find its start checkpoint, so a wrong path fails before OUT is created."""
    from moose_ros.data import open_dataset
    from moose_ros.errors import ConfigError
    from moose_ros.train.trainer import resolve_init

    open_dataset(cfg.data.kind, cfg.data.root, cfg.data.train_split)
    open_dataset(cfg.data.kind, cfg.data.root, cfg.data.val_split)
    if args.resume is None:
        init = resolve_init(args.stage, cfg.stage(args.stage), Path(args.out), args.init)
        if init is not None and not init.is_file():
            raise ConfigError(f"{args.stage} starts from {init}, which does not exist (train the base stage first, "
                              "or pass --init)")


def run(args: argparse.Namespace) -> int:
    """Train one stage; print the result's path and val metrics. Returns the exit status.

    Every option, the recipe (types and ranges of every key), the datasets and the start checkpoint are checked
    before OUT is created; a run that fails with a :class:`~moose_ros.errors.MooseError` removes an OUT it
    created and left empty.
    """
    from moose_ros.errors import MooseError
    from moose_ros.train.config import load_config

    _check_options(args)
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.root={args.data}")
    cfg = load_config(args.config, overrides)  # torch is imported only once the recipe is valid
    _check_inputs(cfg, args)

    import torch

    from moose_ros.train import train_stage
    from moose_ros.train.distributed import cleanup

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    created = not out.exists()
    try:
        result = train_stage(cfg, args.stage, args.out, init=args.init, resume=args.resume, device=args.device,
                             progress=not args.no_progress, halt_at=args.halt_at)
    except MooseError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        cleanup()
    if result.checkpoint is not None:
        best = {k: v for k, v in (result.best or {}).items() if k.endswith("miou")}
        print(f"{args.stage}: {result.steps} steps in {result.seconds:.0f} s -> {result.checkpoint}")
        print(json.dumps(best))
    return 0
