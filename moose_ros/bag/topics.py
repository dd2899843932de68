"""ROS 2 topic names as bags store them: absolute, fully qualified, checked without rclpy.

The rules are those of ``rmw_validate_full_topic_name``: a leading ``/``, tokens of ``[A-Za-z0-9_]`` separated by
single ``/``, no token starting with a digit, no trailing ``/``, at most 255 characters (a bag holds expanded
names, so the relative ``~`` and ``{substitution}`` forms are not accepted here).
"""

from __future__ import annotations

import re

from moose_ros.errors import ConfigError

__all__ = ["MAX_TOPIC_LENGTH", "check_topic_name", "topic_name_problem"]

#: longest accepted topic name in characters (rmw's limit minus the DDS prefix)
MAX_TOPIC_LENGTH = 255

_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def topic_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid absolute ROS 2 topic name, or None when it is valid."""
    if not isinstance(name, str) or not name:
        return "it is empty"
    bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "_/"))})
    if bad:
        return f"it contains {''.join(bad)!r}; allowed are letters, digits, '_' and '/'"
    if not name.startswith("/"):
        return "it must be absolute (start with '/')"
    if len(name) > MAX_TOPIC_LENGTH:
        return f"it is longer than {MAX_TOPIC_LENGTH} characters"
    if name == "/" or name.endswith("/"):
        return "it must not end with '/'"
    for token in name[1:].split("/"):
        if not token:
            return "it must not contain '//'"
        if not _TOKEN.fullmatch(token):
            return f"its part '{token}' starts with a digit"
    return None


def check_topic_name(name: str, option: str) -> str:
    """Return ``name`` if it is a valid absolute topic name, else raise :class:`ConfigError` naming ``option``."""
    problem = topic_name_problem(name)
    if problem is not None:
        raise ConfigError(f"{option} {name!r} is not a valid ROS 2 topic name: {problem}")
    return name
