"""One error tree for the whole package, rooted at :class:`MooseError`.

Messages name the file, parameter or value that was wrong and what was expected instead.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = [
    "BackendError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ExportError",
    "MessageError",
    "MooseError",
    "run_cli",
]


class MooseError(Exception):
    """Base class of every error raised on purpose by moose_ros."""


class ConfigError(MooseError, ValueError):
    """A configuration value or builder argument is invalid (names the parameter and allowed values)."""


class CheckpointError(MooseError):
    """A checkpoint cannot be read, or its ``meta`` contradicts the caller's arguments."""


class DatasetError(MooseError):
    """A dataset root or file is missing or not in the expected layout (names the path and layout)."""


class ExportError(MooseError):
    """The fused graph could not be exported or fails a compatibility check (names the node)."""


class BackendError(MooseError):
    """An inference backend is unavailable or failed (says what is missing and how to install it)."""


class MessageError(MooseError):
    """A ROS message cannot be decoded (unknown encoding, short data, bad size, corrupt payload)."""


def run_cli(prog: str, run: Callable[[], int | None]) -> int:
    """Run a command-line entry point: INFO logging to stderr, exit status 2 with one line on a :class:`MooseError`.

    ``run`` returns the exit status (None = 0); ``prog`` starts the error line (``"<prog>: error: <message>"``).
    """
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run() or 0
    except MooseError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
