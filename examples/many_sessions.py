"""Thousands of actors on a few threads: a Dispatcher runs them in turns.

A chat service keeps one actor per user session: its own state, one message at a time, no
locks. By default each actor owns a thread, so 2,000 sessions would be 2,000 threads, and every
message to a sleeping session wakes one. Here the sessions name the shared dispatcher instead:
its 4 threads run them all, in turns. The kernel supervises every session as usual: one of them
chokes on a message, is restarted behind the same ref, and handles what was queued after it.

The same traffic then goes to sessions that own a thread (the default), for comparison.

Run it with ``python examples/many_sessions.py [--sessions 2000] [--messages 20]``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time

import llmos.actors as actors
from llmos.actors import Actor, Dispatcher, LocalRef, handler, message
from llmos.kernel import kernel


@message("example.Line")
class Line:
    """A line a user typed into their session."""

    text: str


@message("example.Summary")
class Summary:
    pass


class Session(Actor):
    """One user's session: counts the lines it was sent and keeps the last one."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0
        self.last = ""

    @handler(Line)
    def line(self, msg: Line) -> None:
        if msg.text == "crash":
            raise ValueError("this session cannot handle 'crash'")
        self.lines += 1
        self.last = msg.text

    @handler(Summary)
    def summary(self, msg: Summary) -> tuple[int, str]:
        return self.lines, self.last


class PooledSession(Session):
    """The same session with no thread of its own: the shared dispatcher runs it."""

    actor_dispatcher = Dispatcher.shared()


def run(cls: type[Session], sessions: int, messages: int) -> None:
    before = threading.active_count()
    k = kernel()
    start = time.perf_counter()
    refs: list[LocalRef] = [k.spawn(cls, name=f"{cls.__name__}-{i}") for i in range(sessions)]
    started = time.perf_counter() - start
    threads = threading.active_count() - before
    start = time.perf_counter()
    for n in range(messages):
        for i, ref in enumerate(refs):
            ref.tell(Line("crash" if (i, n) == (7, messages // 2) else f"line {n} of user {i}"))
    answers = [ref.ask(Summary(), timeout=30).get() for ref in refs]
    took = time.perf_counter() - start
    total = sum(lines for lines, _last in answers)
    print(
        f"{cls.__name__}: {sessions} sessions on {threads} new threads (started in "
        f"{started:.2f} s); {sessions * messages:,} messages handled in {took:.2f} s "
        f"({sessions * messages / took:,.0f}/s)"
    )
    lines, last = answers[7]
    print(
        f"  session 7 crashed once, was restarted {refs[7].statistics().restarts} time(s), "
        f"and handled {lines} lines after its restart, the last {last!r}"
    )
    assert total == sessions * messages - 1 - messages // 2  # the crash dropped one, and the
    # restarted instance of session 7 starts counting from zero
    for ref in refs:
        ref.stop(block=False)
    actors.stop_all(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # the planned crash logs a traceback otherwise
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends it quietly
    try:
        run(PooledSession, args.sessions, args.messages)
        run(Session, args.sessions, args.messages)
    except KeyboardInterrupt:
        print("interrupted: stopping every session", file=sys.stderr)
        sys.exit(130)
    finally:
        actors.stop_all(timeout=60)


if __name__ == "__main__":
    main()
