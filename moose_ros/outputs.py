"""Output paths of the offline tools: checked before any work, written under a temporary name, then renamed.

Every tool that writes a file or a directory (``moose export -o``, ``moose train --out``, ``moose eval --out``,
``moose bag from-dataset -o``, ``moose bag evaluate --out``) checks its target here first, so a wrong path stops
the run with one line naming the option and the path before anything is computed. Directories are built beside
their target (``.<name>.tmp-XXXX/<name>``) and renamed into place only once complete (:func:`staged_dir`): a
failed or interrupted run leaves nothing half-written. A report directory that is written again is replaced as a
whole, so no stale file of an earlier run stays beside the new report; one that holds files a report never
writes is refused (:func:`check_report_dir`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from moose_ros.errors import ConfigError

__all__ = [
    "REPORT_DIRS",
    "REPORT_FILES",
    "atomic_write_bytes",
    "check_new_dir",
    "check_output_dir",
    "check_output_file",
    "check_report_dir",
    "staged_dir",
    "write_text_atomic",
]

#: files a report directory holds (``moose eval``, ``moose bag evaluate``)
REPORT_FILES: frozenset[str] = frozenset({"report.md", "report.json", "pr_curves.png"})
#: sub-directories of a report and the file names each may hold (None: anything, e.g. node and ROS logs)
REPORT_DIRS: dict[str, re.Pattern[str] | None] = {"gallery": re.compile(r"\d{3}\.png"), "logs": None}


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    mode: int = 0o644,
    before_replace: Callable[[Path], None] | None = None,
) -> None:
    """Write ``data`` to ``path`` so that ``path`` always holds either its old or its new complete content.

    Writes a temporary file in the same folder, flushes and fsyncs it, ``os.replace``s it over ``path`` and fsyncs
    the folder; the file gets ``mode`` (mkstemp creates 0o600; other users and services read caches and models
    too). ``before_replace(tmp_path)`` is called between the fsync and the rename (tests use it to simulate a
    crash there). The temporary file is removed if anything fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be fsync'ed
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 ``text``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _blocking_parent(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists but is not a directory (None when there is none)."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _check_parents(path: Path, option: str) -> None:
    blocker = _blocking_parent(path)
    if blocker is not None:
        raise ConfigError(f"{option} {path}: {blocker} is a file, not a directory")


def check_output_file(path: str | os.PathLike[str], option: str) -> Path:
    """Check that ``path`` can be written as a file: not a directory, no file in its parents. Returns it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is an existing directory; expected a file path")
    _check_parents(path, option)
    return path


def check_output_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Check that ``path`` can be a directory: a directory or nothing yet, no file in its parents. Returns it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is an existing file; expected a directory")
    _check_parents(path, option)
    return path


def check_new_dir(path: str | os.PathLike[str], option: str) -> Path:
    """Check that directory ``path`` does not exist yet and can be created (e.g. a rosbag2). Returns it."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise ConfigError(f"{option} {path}: exists already; choose a new path (it is never overwritten)")
    _check_parents(path, option)
    return path


def _foreign_entries(path: Path) -> list[str]:
    """Entries of report directory ``path`` that no report writes (relative names, sorted)."""
    foreign: list[str] = []
    for entry in sorted(path.iterdir()):
        if entry.name in REPORT_FILES and entry.is_file():
            continue
        if entry.name in REPORT_DIRS and entry.is_dir():
            pattern = REPORT_DIRS[entry.name]
            if pattern is not None:
                foreign += [f"{entry.name}/{f.name}" for f in sorted(entry.iterdir())
                            if not (f.is_file() and pattern.fullmatch(f.name))]
            continue
        foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    return foreign


def check_report_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Check that ``path`` may receive a report: new, empty, or an earlier report (which is replaced whole).

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or holds files a report does not write (the
            message names up to 5 of them).
    """
    path = check_output_dir(path, option)
    if path.is_dir():
        foreign = _foreign_entries(path)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ConfigError(f"{option} {path}: holds files a report does not write ({shown}); choose a new or "
                              "empty directory, or an earlier report directory (which is replaced)")
    return path


@contextlib.contextmanager
def staged_dir(path: str | os.PathLike[str], option: str, *, replace: bool = False) -> Iterator[Path]:
    """Yield a fresh directory to fill; when the block succeeds it becomes ``path``, when it fails it is removed.

    The directory is ``<parent>/.<name>.tmp-XXXX/<name>`` (same file system, so the final rename is atomic; the
    inner name keeps files named after their directory, as rosbag2 does, right). With ``replace`` an existing
    ``path`` is swapped out and deleted after the rename; without it an existing ``path`` is an error.

    Raises:
        ConfigError: the parent cannot be created or written, or ``path`` appeared meanwhile (without ``replace``).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    except OSError as err:
        raise ConfigError(f"{option} {path}: cannot create a directory there: {err}") from err
    stage = holder / path.name
    try:
        stage.mkdir()
        yield stage
        _commit(stage, path, holder / ".old", option, replace=replace)
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def _commit(stage: Path, path: Path, old: Path, option: str, *, replace: bool) -> None:
    """Rename the finished ``stage`` to ``path``, moving an existing ``path`` to ``old`` first (``replace``)."""
    try:
        if path.exists():
            if not replace:
                raise ConfigError(f"{option} {path}: exists already; choose a new path (it is never overwritten)")
            os.rename(path, old)
        os.rename(stage, path)
    except OSError as err:
        raise ConfigError(f"{option} {path}: cannot move the finished output into place: {err}") from err
