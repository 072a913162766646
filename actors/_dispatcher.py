"""Dispatchers: a few threads that run the messages of many actors.

By default every actor owns a thread that sleeps on its mailbox. That is the simplest model
and the fastest for a few busy actors, but a tell to a sleeping actor wakes its thread, and
with a thousand actors the process spends its time waking threads that then wait for the GIL
(``benchmarks/bench_actors.py`` measures bare threads on queues doing no better). An actor
whose class names a :class:`Dispatcher` (``actor_dispatcher``) owns no thread: when a
message reaches it while it is idle, it joins the dispatcher's queue of ready actors, and one
of the dispatcher's threads handles up to ``batch`` of its messages, then moves on.

Everything else is the same: one message at a time per actor, in order, the same failure
contract and supervision, the same refs. The one thing to mind: a handler that blocks (an
``ask(...).get()``, a sleep, slow I/O) holds one of the dispatcher's few threads for as long,
and the actors behind it wait. Give such actors their own thread (the default) or their own
dispatcher; waiting on an ask from a handler is bounded by its timeout all the same.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from llmos.actors._errors import LlmosError

__all__ = ["Dispatcher"]

log = logging.getLogger("llmos.actors")

Job = Callable[[int], bool]
"""One turn of a ready actor: called with the most messages it may handle in this turn;
True when the actor has more to do (it then stays ready: another turn follows)."""


class Dispatcher:
    """A fixed set of threads running the turns of the actors that name it.

    Args:
        threads: how many threads serve the actors (at least 1). With the GIL, more threads
            do not handle more messages per second; they let actors whose handlers wait (on
            I/O, on an ask) not hold up the others.
        batch: the most messages one actor handles in a turn before the next ready actor's
            turn (fairness against throughput).
        name: prefix of the threads' names.

    The threads start with the first turn and are daemon threads; :meth:`close` ends them once
    no actor uses the dispatcher any more.
    """

    _shared: Dispatcher | None = None
    _shared_lock = threading.Lock()

    def __init__(self, threads: int = 4, batch: int = 64, name: str = "llmos-dispatcher") -> None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise LlmosError(f"a dispatcher needs threads >= 1 (an int), got {threads!r}")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise LlmosError(f"a dispatcher needs batch >= 1 (an int), got {batch!r}")
        self.threads = threads
        self.batch = batch
        self.name = name
        self._ready: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._closed = False

    @classmethod
    def shared(cls) -> Dispatcher:
        """The process-wide dispatcher (4 threads, turns of 64 messages), made on first use."""
        with cls._shared_lock:
            if cls._shared is None or not cls._shared.open():
                cls._shared = cls(name="llmos-shared")
            return cls._shared

    def submit(self, job: Job) -> None:
        """Queue one turn of a ready actor.

        Raises:
            LlmosError: the dispatcher is closed.
        """
        if not self._workers:
            self._start()
        if self._closed:
            raise LlmosError(f"dispatcher {self.name!r} is closed; its actors cannot run")
        self._ready.put(job)

    def _start(self) -> None:
        with self._lock:
            if self._workers or self._closed:
                return
            for i in range(self.threads):
                worker = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
                worker.start()
                self._workers.append(worker)

    def _work(self) -> None:
        ready = self._ready
        take, batch = ready.get, self.batch
        while (job := take()) is not None:
            try:
                while job(batch):  # more to do: go on unless other actors wait for a turn
                    if not ready.empty():
                        ready.put(job)
                        break
            except BaseException as exc:  # a turn contains its actor's errors: never lose a thread
                log.error("a turn on %s raised; the thread goes on", self.name, exc_info=exc)

    def open(self) -> bool:
        """True until :meth:`close`."""
        return not self._closed

    def alive(self) -> bool:
        """True while the dispatcher can run turns (not closed, no thread lost)."""
        return not self._closed and all(w.is_alive() for w in self._workers)

    def close(self, timeout: float = 10.0) -> bool:
        """End the threads after the turns already queued. Stop its actors first.

        Returns:
            True if every thread ended within ``timeout``.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            workers = list(self._workers)
        for _ in workers:
            self._ready.put(None)
        for worker in workers:
            worker.join(timeout)
        return not any(w.is_alive() for w in workers)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.threads} threads"
        return f"<Dispatcher {self.name} {state}, batch {self.batch}>"
