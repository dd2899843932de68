"""Image sizes written on the command line: ``"HxW"`` (most tools) or ``"WxH"`` (``moose bench node``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from moose_ros.errors import ConfigError

__all__ = ["parse_size", "size_type"]


def parse_size(text: str, *, what: str = "size", order: str = "HxW", minimum: int = 1) -> tuple[int, int]:
    """``"256x512"`` -> (256, 512), numbers in the order they are written (pixels).

    Args:
        text: two positive integers joined by ``x``.
        what: the option name used in the error message, e.g. ``"--input-size"``.
        order: ``"HxW"`` or ``"WxH"``: only used to describe the expected form in the error message.
        minimum: smallest accepted value of either number.

    Raises:
        ConfigError: naming ``what``, the expected form and the text received.
    """
    example = "256x512" if order == "HxW" else "1280x720"
    try:
        first, second = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise ConfigError(f"{what} must be {order} in pixels (e.g. {example}), got {text!r}") from None
    if first < minimum or second < minimum:
        raise ConfigError(f"{what} must be at least {minimum}x{minimum} pixels, got {text!r}")
    return first, second


def size_type(*, order: str = "HxW", minimum: int = 1) -> Callable[[str], tuple[int, int]]:
    """An argparse ``type=`` callable around :func:`parse_size` (argparse prints the message as the error)."""

    def convert(text: str) -> tuple[int, int]:
        try:
            return parse_size(text, order=order, minimum=minimum)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert
