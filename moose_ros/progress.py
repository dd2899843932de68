"""Long blocking work (a TensorRT engine build takes minutes on a Jetson) with a progress line every few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["run_with_progress"]

T = TypeVar("T")


def run_with_progress(work: Callable[[], T], report: Callable[[float], None], every_s: float = 10.0) -> T:
    """Run ``work()`` in a worker thread; call ``report(elapsed_seconds)`` every ``every_s`` until it returns.

    Returns ``work()``'s result; an exception it raises is re-raised in the caller's thread.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as err:  # re-raised below in the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=target, name="moose_progress", daemon=True)
    start = time.monotonic()
    worker.start()
    while True:
        worker.join(every_s)
        if not worker.is_alive():
            break
        report(time.monotonic() - start)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
