"""``python -m moose_ros.train ...`` = ``moose train ...`` (handy under ``torchrun -m moose_ros.train``)."""

from __future__ import annotations

import argparse
import sys

from moose_ros.errors import run_cli
from moose_ros.tools import train as tool


def main(argv: list[str] | None = None) -> int:
    """Parse ``moose train`` arguments and run it; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m moose_ros.train", description=tool.HELP)
    tool.add_arguments(parser)
    args = parser.parse_args(argv)
    return run_cli("moose train", lambda: tool.run(args))


if __name__ == "__main__":
    sys.exit(main())
