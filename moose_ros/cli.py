"""``moose``: one command line with a subcommand per tool.

Each tool lives in ``moose_ros/tools/<module>.py`` and provides ``HELP: str``,
``add_arguments(parser) -> None`` and ``run(args) -> int``. Tool modules import only light dependencies at
module level; torch, onnxruntime and rclpy are imported inside ``run`` so ``moose --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from moose_ros import __version__
from moose_ros.errors import MooseError

__all__ = ["build_parser", "main"]

#: subcommand -> tool module
TOOLS: dict[str, str] = {
    "synth": "moose_ros.tools.synth",
    "train": "moose_ros.tools.train",
    "import": "moose_ros.tools.import_model",
    "export": "moose_ros.tools.export",
    "calibrate": "moose_ros.tools.calibrate",
    "eval": "moose_ros.tools.evaluate",
    "bag": "moose_ros.tools.bag",
    "bench": "moose_ros.tools.bench",
    "engine": "moose_ros.tools.engine",
    "demo": "moose_ros.tools.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``moose`` argument parser with every tool's subcommand."""
    parser = argparse.ArgumentParser(prog="moose", description="MOoSe anomaly segmentation tools for ROS 2.")
    parser.add_argument("--version", action="version", version=f"moose_ros {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in TOOLS.items():
        module = importlib.import_module(module_name)
        tool = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(tool)
        tool.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moose`` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except MooseError as err:
        print(f"moose {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
