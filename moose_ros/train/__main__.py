"""``python -m moose_ros.train ...`` = ``moose train ...`` (handy under ``torchrun -m moose_ros.train``)."""

from __future__ import annotations

import argparse
import logging
import sys

from moose_ros.errors import MooseError
from moose_ros.tools import train as tool


def main(argv: list[str] | None = None) -> int:
    """Parse ``moose train`` arguments and run it; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m moose_ros.train", description=tool.HELP)
    tool.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return tool.run(args)
    except MooseError as err:
        print(f"moose train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
