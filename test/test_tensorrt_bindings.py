"""Every TensorRT name the backend touches exists in the published Python bindings of TensorRT 10.x and 11.x.

The bindings wheels (``tensorrt-cu12-bindings`` 10.16.1.11, ``tensorrt-cu13-bindings`` 11.4.0.106; ~1.3 MB each,
CPython 3.11 manylinux x86_64, pinned by sha256) install from PyPI without TensorRT's libraries. Nothing is
loaded: the names the extension module registers are read from its bytes (pybind11 keeps each class, method,
property and enum value name as a C string; docstrings and messages contain spaces and do not count; the linker
stores a name that is the tail of a longer one only once, so a name counts as registered when an identifier
string equals it or ends with it), plus the names the package's ``__init__.py`` defines (``nptype``,
``__version__``). The same rule finds each name TensorRT 11 removed in 10.16 and not in 11.4, which shows it
tells the versions apart.

The wheels are downloaded once with ``pip download`` into ``$MOOSE_TRT_BINDINGS_DIR`` (default
``~/.cache/moose_ros/tensorrt-bindings``) and reused from there; without network and without cached wheels the
tests skip and say so.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_tensorrt_fake import FakeCuda, FakeTensorRT

from moose_ros.backends.tensorrt_compat import OPTIONAL_API, SUPPORTED_MAJORS, TRT_API

#: major -> (distribution, version, wheel file, sha256)
WHEELS = {
    10: (
        "tensorrt-cu12-bindings",
        "10.16.1.11",
        "tensorrt_cu12_bindings-10.16.1.11-cp311-none-manylinux_2_28_x86_64.whl",
        "150ef2b672487e29a8ea916353467c3e199994fb33589167e3641a928e243aa7",
    ),
    11: (
        "tensorrt-cu13-bindings",
        "11.4.0.106",
        "tensorrt_cu13_bindings-11.4.0.106-cp311-none-manylinux_2_28_x86_64.whl",
        "d072ac2a095e2be749fefc847adfb25d5ebe70303401df62ede8fe67a59f27fc",
    ),
}

#: What TensorRT 11 removed (and the backend therefore only touches behind capability checks).
REMOVED_IN_11 = {"FP16", "OBEY_PRECISION_CONSTRAINTS", "platform_has_fast_fp16", "precision", "set_output_type"}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _cache_dir() -> Path:
    if os.environ.get("MOOSE_TRT_BINDINGS_DIR"):
        return Path(os.environ["MOOSE_TRT_BINDINGS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moose_ros" / "tensorrt-bindings"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _wheel(major: int) -> Path:
    """The cached wheel of ``major`` (downloaded on first use; skip the test when that is impossible)."""
    dist, version, filename, sha = WHEELS[major]
    folder = _cache_dir()
    path = folder / filename
    if not path.is_file() or _sha256(path) != sha:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11"]
        cmd += ["--platform", "manylinux_2_28_x86_64", "--implementation", "cp", "-q", "-d", str(folder)]
        try:
            out = subprocess.run([*cmd, f"{dist}=={version}"], capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as err:
            pytest.skip(f"cannot download {dist}=={version} into {folder}: {err}")
        if out.returncode != 0 or not path.is_file():
            pytest.skip(f"cannot download {dist}=={version} into {folder} (offline?): {out.stderr.strip()[-300:]}")
    if _sha256(path) != sha:
        pytest.fail(f"{path}: sha256 {_sha256(path)} differs from the pinned {sha}")
    return path


@functools.cache
def registered_names(major: int) -> frozenset[str]:
    """Identifier strings of the wheel's extension module plus the names its ``__init__.py`` defines."""
    with zipfile.ZipFile(_wheel(major)) as wheel:
        binary = wheel.read("tensorrt_bindings/tensorrt.so")
        init = wheel.read("tensorrt_bindings/__init__.py").decode()
    strings = {m.group().decode() for m in re.finditer(rb"[\x20-\x7e]{2,}", binary)}
    names = {s for s in strings if _IDENT.fullmatch(s)}
    for node in ast.parse(init).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return frozenset(names)


def is_registered(name: str, major: int) -> bool:
    names = registered_names(major)
    return name in names or any(s.endswith(name) for s in names)


def test_supported_range_matches_the_checked_wheels():
    assert set(WHEELS) == set(range(*SUPPORTED_MAJORS))


@pytest.mark.parametrize("major", sorted(WHEELS))
def test_backend_names_exist_in_the_published_bindings(major):
    missing = [name for name in TRT_API if not is_registered(name, major)]
    assert not missing, f"TensorRT {WHEELS[major][1]} bindings lack {missing}"


def test_optional_names_exist_in_10_and_are_gone_in_11():
    assert set(OPTIONAL_API) == REMOVED_IN_11
    assert [n for n in OPTIONAL_API if not is_registered(n, 10)] == []
    assert [n for n in OPTIONAL_API if is_registered(n, 11)] == []  # hence the capability checks


def _fake_surface(major: int) -> set[str]:
    """Public names the fake TensorRT of ``major`` offers: module attributes, and class names and members."""
    fake = FakeTensorRT(FakeCuda(), major=major)
    names: set[str] = set()
    pending = [(k, object.__getattribute__(fake, k)) for k in ("nptype", "float32", "float16", "ILogger")]
    pending += [(k, object.__getattribute__(fake, k)) for k in ("BuilderFlag", "NetworkDefinitionCreationFlag")]
    pending += [(k, object.__getattribute__(fake, k)) for k in ("TensorIOMode", "ExecutionContextAllocationStrategy")]
    pending += [(k, object.__getattribute__(fake, k)) for k in ("ILayer", "IExecutionContext", "Builder")]
    pending += [(k, object.__getattribute__(fake, k)) for k in ("OnnxParser", "Runtime", "IBuilderConfig")]
    pending += [(k, object.__getattribute__(fake, k)) for k in ("PreviewFeature",)]
    while pending:
        name, value = pending.pop()
        names.add(name)
        if isinstance(value, type):
            for cls in value.__mro__:
                if cls.__module__ == "test_tensorrt_fake" and cls.__name__ not in ("_Api",):
                    pending += [(member, inner) for member, inner in vars(cls).items() if not member.startswith("_")]
    return names


@pytest.mark.parametrize("major", sorted(WHEELS))
def test_the_fake_tensorrt_used_by_the_logic_tests_is_faithful(major):
    surface = _fake_surface(major)
    unknown = sorted(n for n in surface if not is_registered(n, major))
    assert not unknown, f"the fake offers names TensorRT {WHEELS[major][1]} does not register: {unknown}"
    if major >= 11:
        assert not surface & REMOVED_IN_11
