"""Wake-up descriptors: how one thread wakes another that sleeps in ``poll``.

A thread that sleeps on sockets (an asking thread waiting for its answer, an idle actor reading
the ROUTER, the I/O thread) also polls an eventfd of its own; another thread that has work for
it, or took its work over, writes that eventfd (:func:`signal_fd`).

Each thread leases one eventfd for its life (:func:`lease_of_this_thread`); when the thread
ends, the eventfd returns to a free list instead of being closed, so a late wake-up can only
ever reach an eventfd (and is then read as a spurious wake-up by its next user), never
whatever file reused the number.
"""

from __future__ import annotations

import ctypes
import os
import select
import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Lease", "lease_of_this_thread", "signal_fd"]

_ONE = (1).to_bytes(8, sys.byteorder)
_POLLIN = select.POLLIN if hasattr(select, "poll") else 1
_free: list[int] = []
_free_lock = threading.Lock()
_local = threading.local()


def _gil_keeping_write() -> Callable[[int, bytes, int], int] | None:
    """libc ``write`` called without releasing the GIL (ctypes.PyDLL), or None.

    ``os.write`` releases the GIL, so every wake-up would hand the GIL to the I/O thread in the
    middle of a burst of sends, one message per thread switch. Writing 8 bytes to an eventfd
    never blocks, so holding the GIL through it is safe; the I/O thread then wakes, waits for
    the GIL, and drains the whole burst into one frame.
    """
    if not hasattr(os, "eventfd"):
        return None
    try:
        write = ctypes.PyDLL(None).write
    except (OSError, AttributeError):
        return None
    write.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t]
    write.restype = ctypes.c_ssize_t
    return write


write_keeping_gil = _gil_keeping_write()


def signal_fd(fd: int) -> None:
    """Signal a wake-up eventfd (or pipe) without blocking, keeping the GIL where possible.

    A full eventfd is already signalled, and a closed one has nobody left to wake, so a
    failed write needs nothing more.
    """
    if write_keeping_gil is not None:
        write_keeping_gil(fd, _ONE, 8)
        return
    try:
        os.write(fd, _ONE)
    except OSError:
        pass


class Lease:
    """One thread's wake-up eventfd (back to the free list when the thread ends), and the
    thread's poll set: that eventfd and the socket descriptor it waited on last."""

    __slots__ = ("fd", "poller", "socket_fd")

    def __init__(self) -> None:
        with _free_lock:
            fd = _free.pop() if _free else -1
        if fd < 0:
            fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.fd = fd
        self.poller = select.poll()
        self.poller.register(fd, _POLLIN)
        self.socket_fd = -1

    def watch(self, socket_fd: int) -> Any:
        """The poll set, watching the socket descriptor ``socket_fd`` (instead of the last one)."""
        if socket_fd != self.socket_fd:
            if self.socket_fd >= 0:
                self.poller.unregister(self.socket_fd)
            self.poller.register(socket_fd, _POLLIN)
            self.socket_fd = socket_fd
        return self.poller

    def signal(self) -> None:
        """Wake the thread if it sleeps in its poll set (from any thread)."""
        signal_fd(self.fd)

    def __del__(self) -> None:
        with _free_lock:
            _free.append(self.fd)


def lease_of_this_thread() -> Lease:
    """The calling thread's lease (taken on its first call)."""
    lease: Lease | None = getattr(_local, "lease", None)
    if lease is None:
        lease = _local.lease = Lease()
    return lease
