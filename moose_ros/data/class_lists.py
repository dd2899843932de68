"""Named class lists and class-list files (``moose import --classes``).

A class list is the class names indexed by the network's output channel, with one RGB colour per class. Known
names: ``cityscapes`` (the 19 train ids) and ``streethazards`` (the 13 outputs of the MOoSe authors' StreetHazards
model: index 0 ``unlabeled``, then the 12 known classes; the dataset's ``anomaly`` label has no output).

A class-list file is either

- ``.json`` / ``.yaml`` / ``.yml``: a list of names, a list of ``{"name": str, "color": [r, g, b]}``, or a mapping
  ``{"classes": [names], "colors": [[r, g, b], ...]}`` (``colors`` optional);
- any other suffix: plain text, one class name per line (blank lines and lines starting with ``#`` skipped).

Classes without a colour get one from a fixed, well-spread palette. No torch, no rclpy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from moose_ros.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_COLORS
from moose_ros.data.streethazards import STREETHAZARDS_CLASSES, STREETHAZARDS_COLORS
from moose_ros.errors import ConfigError

__all__ = ["CLASS_LIST_NAMES", "ClassList", "class_list_for_count", "fallback_colors", "read_class_list"]


class ClassList(NamedTuple):
    """Class names and colours of a network's outputs.

    Attributes:
        name: where the list came from (``"cityscapes"``, ``"streethazards"`` or the file path).
        classes: names, index = output channel.
        colors: RGB triplets in 0..255, one per class.
    """

    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]


_KNOWN: dict[str, ClassList] = {
    "cityscapes": ClassList("cityscapes", tuple(CITYSCAPES_CLASSES), tuple(CITYSCAPES_COLORS)),
    "streethazards": ClassList(
        "streethazards", ("unlabeled", *STREETHAZARDS_CLASSES), ((0, 0, 0), *STREETHAZARDS_COLORS)
    ),
}
#: Names :func:`read_class_list` accepts besides a file path.
CLASS_LIST_NAMES: tuple[str, ...] = tuple(_KNOWN)


def fallback_colors(count: int) -> tuple[tuple[int, int, int], ...]:
    """``count`` distinct, well-spread RGB colours (a fixed sequence: the same count gives the same colours)."""
    return tuple(((37 * i + 64) % 256, (101 * i + 32) % 256, (197 * i + 128) % 256) for i in range(count))


def class_list_for_count(count: int) -> ClassList | None:
    """The known list with ``count`` classes (19: cityscapes, 13: streethazards), or None."""
    matches = [known for known in _KNOWN.values() if len(known.classes) == count]
    return matches[0] if len(matches) == 1 else None


def _color(value: Any, where: str) -> tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or any(isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255 for v in value)):
        raise ConfigError(f"{where}: a colour must be [r, g, b] with integers in 0..255, got {value!r}")
    return int(value[0]), int(value[1]), int(value[2])


def _from_data(data: Any, where: str) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Names and optional colours from parsed JSON/YAML (the three shapes of the module docstring)."""
    if isinstance(data, dict):
        names, colors = data.get("classes"), data.get("colors")
        if not isinstance(names, list):
            raise ConfigError(f"{where}: a mapping needs 'classes': [names] (and optionally 'colors')")
        if colors is not None and (not isinstance(colors, list) or len(colors) != len(names)):
            raise ConfigError(f"{where}: 'colors' must be a list with one [r, g, b] per class ({len(names)})")
        data = names if colors is None else [{"name": n, "color": c} for n, c in zip(names, colors, strict=True)]
    if not isinstance(data, list):
        raise ConfigError(f"{where}: expected a list of class names, got {type(data).__name__}")
    names_out: list[str] = []
    colors_out: list[tuple[int, int, int]] = []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            if not isinstance(item.get("name"), str) or "color" not in item:
                raise ConfigError(f"{where}: entry {index} must be {{'name': str, 'color': [r, g, b]}}")
            names_out.append(item["name"])
            colors_out.append(_color(item["color"], f"{where} entry {index}"))
        elif isinstance(item, str):
            names_out.append(item)
        else:
            raise ConfigError(f"{where}: entry {index} is {item!r}; expected a class name")
    if colors_out and len(colors_out) != len(names_out):
        raise ConfigError(f"{where}: give a colour for every class or for none")
    return names_out, colors_out or None


def _read_file(path: Path) -> ClassList:
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"--classes {path}: cannot read the class-list file: {err}") from err
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        import yaml

        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as err:
            raise ConfigError(f"--classes {path}: not valid {path.suffix[1:].upper()}: {err}") from err
        names, colors = _from_data(data, where)
    else:
        names = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        colors = None
    names = [name.strip() for name in names]
    if not names or any(not name for name in names):
        raise ConfigError(f"--classes {path}: needs at least one class and no empty names")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"--classes {path}: class names must be unique; repeated: {dup}")
    return ClassList(where, tuple(names), tuple(colors) if colors else fallback_colors(len(names)))


def read_class_list(spec: str | os.PathLike[str]) -> ClassList:
    """A known list by name (:data:`CLASS_LIST_NAMES`) or a class-list file (see the module docstring).

    Raises:
        ConfigError: neither a known name nor a readable, valid file (names the value and the allowed names).
    """
    if str(spec) in _KNOWN:
        return _KNOWN[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"--classes {spec}: not one of {', '.join(CLASS_LIST_NAMES)} and not an existing file")
    return _read_file(path)
