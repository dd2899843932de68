"""``moose synth``: write SynthStreet frames in the Cityscapes, LostAndFound or Fishyscapes layout.

Examples::

    moose synth data/synth --split train --count 800 --size 256x512 --seed 0
    moose synth data/synth --split val --count 200
    moose synth data/synth_ood --split test --count 200 --ood --layout lostandfound,fishyscapes
    moose synth data/drive --ood --sequence 60 --count 1 --layout lostandfound
"""

from __future__ import annotations

import argparse
import logging
import time

from moose_ros.sizes import size_type

HELP = "generate SynthStreet scenes (Cityscapes layout for training, LostAndFound/Fishyscapes for OoD tests)"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``moose synth``."""
    parser.add_argument("out", help="dataset root to write into (created if missing)")
    parser.add_argument("--split", default=None, help="split name (default: train, or test with --ood/--sequence)")
    parser.add_argument("--count", type=int, default=100, help="frames to write (sequences with --sequence)")
    parser.add_argument("--size", type=size_type(minimum=16), default=(256, 512),
                        help="HEIGHTxWIDTH in pixels (256x512)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed; same seed, same bytes (0)")
    parser.add_argument("--layout", default=None,
                        help="cityscapes | lostandfound | fishyscapes, or several joined by commas "
                             "(default: cityscapes; lostandfound,fishyscapes with --ood)")
    parser.add_argument("--ood", action="store_true", help="place unknown objects on or beside the road")
    parser.add_argument("--sequence", type=int, default=0, metavar="FRAMES",
                        help="write --count drives of FRAMES consecutive frames each (camera moving forward)")
    parser.add_argument("--workers", type=int, default=1, help="render in this many processes (1)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Generate the frames; returns 0 on success."""
    from moose_ros.data.synth import write_synthstreet

    ood = bool(args.ood)
    split = args.split if args.split is not None else ("test" if ood or args.sequence else "train")
    layout = args.layout if args.layout is not None else ("lostandfound,fishyscapes" if ood else "cityscapes")
    if args.sequence and layout == "lostandfound,fishyscapes" and args.layout is None:
        layout = "lostandfound"
    height, width = args.size
    start = time.perf_counter()
    paths = write_synthstreet(args.out, split=split, count=args.count, layout=layout, seed=args.seed,
                              height=height, width=width, ood=ood, sequence=args.sequence,
                              progress=not args.no_progress, workers=args.workers)
    elapsed = time.perf_counter() - start
    frames = args.count * args.sequence if args.sequence else args.count
    log.info("wrote %d files (%d frames, %s, split %s) to %s in %.1f s", len(paths), frames, layout, split,
             args.out, elapsed)
    return 0
