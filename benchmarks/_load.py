"""The load the benchmarks run beside: ``--hog``, a process that keeps one CPU busy."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

__all__ = ["hog_beside"]


@contextlib.contextmanager
def hog_beside(on: bool) -> Iterator[None]:
    """While the block runs, a process that keeps one CPU busy (the machine under load), if
    ``on``; it is stopped when the block ends, however it ends."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
