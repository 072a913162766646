"""Shared fixtures: every test ends with no actor running and no llmos thread left behind."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import llmos.actors as actors


def llmos_threads() -> list[threading.Thread]:
    """Threads started by llmos (actor threads and I/O threads are all named ``llmos:...``)."""
    return [t for t in threading.enumerate() if t.name.startswith("llmos:") and t.is_alive()]


@pytest.fixture(autouse=True)
def _no_actor_left() -> Iterator[None]:
    yield
    actors.stop_all(timeout=15.0)
    left = llmos_threads()
    for thread in left:
        thread.join(5.0)
    left = llmos_threads()
    assert not left, f"threads left running after the test: {[t.name for t in left]}"
