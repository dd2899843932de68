"""The one safe image decoder every dataset reader and tool uses (Pillow, bounded in size, errors named).

Pillow reports damaged files in many ways: ``OSError`` (truncated data), ``SyntaxError`` ("broken PNG file"
on a corrupt chunk), ``ValueError``, ``EOFError``, ``struct.error``, ``zlib.error``, and
``DecompressionBombError`` for huge images. :func:`decode_image` turns all of them into one
:class:`~moose_ros.errors.DatasetError` that names the file (or message) and the reason, and it refuses images
larger than :data:`MAX_IMAGE_PIXELS` from their header, before any pixel is decompressed.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from PIL import Image

from moose_ros.errors import DatasetError

__all__ = ["DECODE_ERRORS", "MAX_IMAGE_PIXELS", "decode_image"]

#: Largest image (width x height, pixels) any reader decodes: 8192 x 8192, 32x a 2048x1024 Cityscapes frame.
MAX_IMAGE_PIXELS = 8192 * 8192

#: Exceptions Pillow raises for damaged or hostile image data.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, Image.DecompressionBombError,
    MemoryError, IndexError, KeyError, TypeError,
)

T = TypeVar("T")


def decode_image(source: str | Path | bytes, convert: Callable[[Image.Image], T], *, what: str = "image",
                 where: str | None = None, max_pixels: int = MAX_IMAGE_PIXELS) -> T:
    """Open ``source`` (a file path or encoded bytes), check its size, decode it and return ``convert(img)``.

    Args:
        source: image file path, or the encoded bytes of a PNG / JPEG / ... payload.
        convert: turns the decoded Pillow image into the result (e.g. a numpy array); it runs while the file
            is open, and a :class:`DatasetError` it raises passes through unchanged.
        what: the kind of file named in messages ("image", "label").
        where: how to name the source in messages (default: the path, or "<bytes>").
        max_pixels: largest accepted width x height in pixels, checked from the header before decoding.

    Raises:
        DatasetError: missing file, unreadable or corrupt data, or an image larger than ``max_pixels``, naming
            the source, the reason and, for size, the limit.
    """
    name = where if where is not None else (str(source) if not isinstance(source, bytes) else "<bytes>")
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own, lower limit applies
            with Image.open(handle) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise DatasetError(f"{what} {name} is {width}x{height} pixels; at most {max_pixels} pixels "
                                       "are accepted (a decompression bomb or the wrong file)")
                if width < 1 or height < 1:
                    raise DatasetError(f"{what} {name} is empty ({width}x{height} pixels)")
                img.load()
                return convert(img)
    except FileNotFoundError as err:
        raise DatasetError(f"{what} file missing: {name}") from err
    except IsADirectoryError as err:
        raise DatasetError(f"{what} {name} is a directory, not an image file") from err
    except Image.DecompressionBombError as err:
        raise DatasetError(f"{what} {name} is too large to decode ({err}); at most {max_pixels} pixels "
                           "are accepted") from err
    except DatasetError:
        raise
    except DECODE_ERRORS as err:
        reason = str(err) or type(err).__name__
        raise DatasetError(f"cannot decode {what} {name}: {reason} (corrupt or not an image file)") from err
