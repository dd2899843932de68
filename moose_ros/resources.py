"""Where the installed data files live (``share/moose_ros``: config, launch, models).

Looked up in order: the ament index (``AMENT_PREFIX_PATH``), ``<sys.prefix>/share/moose_ros`` (pip/venv
installs), then the source checkout this module sits in (editable installs, tests).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from moose_ros.errors import ConfigError

__all__ = ["bundled_model_path", "config_path", "share_dir"]

PACKAGE = "moose_ros"


def _candidates() -> list[Path]:
    found: list[Path] = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            found.append(Path(prefix) / "share" / PACKAGE)
    found.append(Path(sys.prefix) / "share" / PACKAGE)
    found.append(Path(__file__).resolve().parents[1])  # source checkout: <repo>/moose_ros/resources.py
    return found


def share_dir() -> Path:
    """The first directory holding ``package.xml`` and ``config/`` for this package."""
    candidates = _candidates()
    for path in candidates:
        if (path / "package.xml").is_file() and (path / "config").is_dir():
            return path
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError(f"cannot find the moose_ros share directory (package.xml + config/); tried: {tried}")


def config_path(name: str) -> Path:
    """Path of an installed config file, e.g. ``config_path("moose.yaml")``."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise ConfigError(f"config file '{name}' not found at {path}")
    return path


def bundled_model_path(name: str = "moose_synthstreet.onnx") -> Path:
    """Path of the bundled ONNX model in ``share/moose_ros/models``."""
    path = share_dir() / "models" / name
    if not path.is_file():
        raise ConfigError(f"bundled model '{name}' not found at {path}")
    return path


def model_or_bundled(model: str) -> str:
    """``model`` (the node's parameter), or the bundled model found through the ament index when it is empty.

    Raises:
        ConfigError: ``model`` is empty and no bundled model is installed (says what to pass instead).
    """
    if model != "":
        return model
    try:
        return str(bundled_model_path())
    except ConfigError as err:
        raise ConfigError(
            f"parameter 'model' is empty and the bundled model is missing ({err}); pass model:=<file.onnx> "
            "(write one with `moose export`)"
        ) from err
