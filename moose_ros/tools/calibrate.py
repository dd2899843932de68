"""``moose calibrate``: SML statistics (per-class max-logit mean and std) of a checkpoint, stored in its meta.

Examples::

    moose calibrate out/run/probes.pt --data out/synthstreet                # in place, Cityscapes-layout train split
    moose calibrate models/moose_synthstreet.pt --data out/synthstreet -o out/calibrated.pt --limit 200
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["HELP", "add_arguments", "run"]

HELP = "measure standardised max-logit (SML) statistics on training images and store them in the checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``moose calibrate``."""
    parser.add_argument("checkpoint", type=Path, help="MOoSe checkpoint (.pt)")
    parser.add_argument("--data", type=Path, required=True, help="dataset root (training images)")
    parser.add_argument("--dataset", default="cityscapes", help="dataset kind of --data (default cityscapes)")
    parser.add_argument("--split", default="train", help="split of --data (default train)")
    parser.add_argument("--limit", type=int, default=None, help="first N images only (default: all)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="checkpoint to write (default: in place)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")


def run(args: argparse.Namespace) -> int:
    """Compute, store and summarise the statistics."""
    import torch

    from moose_ros.calibrate import SML_HEADS, sml_statistics, write_sml_calibration
    from moose_ros.data import open_dataset
    from moose_ros.errors import ConfigError

    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be a positive number of images, got {args.limit}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dataset = open_dataset(args.dataset, args.data, args.split)
    stats = sml_statistics(args.checkpoint, dataset, limit=args.limit)
    path = write_sml_calibration(args.checkpoint, stats, out=args.output, data=str(args.data))
    for name in SML_HEADS:
        seen = sum(1 for c in stats[name]["count"] if c > 0)
        print(f"{name}: max-logit statistics for {seen}/{len(stats[name]['count'])} classes")
    print(f"wrote calibration['sml'] ({stats['images']} images) to {path}")
    return 0
