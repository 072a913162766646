"""Where a local tell's and ask's time goes: the bounds behind ``bench_actors``' ratios.

``bench_actors`` gives ratios; this splits each cost by thread and by step, for llmos, stock
pykka and the bare ``queue.SimpleQueue`` pair that ``bench_actors`` calls the physical limit:

- **tells, each side alone**: the sender's time per tell while the actor is held busy (nothing
  is woken, nothing runs beside it), then the actor's time per message as it drains them;
- **tells, both running** (to 1 and to 10 actors): wall time per tell, and the sender
  thread's own CPU time per tell (``time.thread_time``). Both sides run Python, so the GIL
  lets only one run at a time: the wall time is bounded below by the sum of the two sides.
  What the sender spends beyond its time alone is waking a consumer that fell asleep (a
  futex call) and waiting for the GIL;
- **the sender's steps**: the wire check (``check_message``), the envelope and clock read,
  the queue put;
- **asks**: wall and asker CPU time per round trip (two thread wake-ups each).

Each figure is the minimum over ``--rounds`` rounds (the least disturbed), in ns per message.

Run: ``python benchmarks/profile_actors.py [--tells 100000] [--rounds 5] [--hog]``
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

import pykka
from _load import hog_beside
from bench_actors import LlmosCounter, Ping, PykkaCounter

import llmos.actors as actors
from llmos.actors import handler, message
from llmos.actors.lowlevel import check_message


@message("profile.Hold")
class Hold:
    """Holds the actor until the profile's gate opens."""

    key: int


GATE = threading.Event()


class HeldLlmos(LlmosCounter):
    @handler(Hold)
    def hold(self, msg: Hold) -> None:
        GATE.wait(60)


class HeldPykka(PykkaCounter):
    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Hold):
            GATE.wait(60)
            return None
        return super().on_receive(message)


class Bare:
    """The limit's pair: one thread taking from a SimpleQueue, one call per message."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _handle(self, msg: Any) -> None:
        self.count += 1

    def _run(self) -> None:
        get, handle = self.queue.get, self._handle
        while (msg := get()) is not None:
            if type(msg) is Hold:
                GATE.wait(60)
            elif type(msg) is threading.Event:
                msg.set()
            else:
                handle(msg)

    def tell(self, msg: Any) -> None:
        self.queue.put(msg)

    def sync(self) -> None:
        done = threading.Event()
        self.queue.put(done)
        done.wait()

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


def contenders() -> dict[str, tuple[Callable[[Any], None], Callable[[], None], Any]]:
    """name -> (tell, sync, ref) for an actor of each kind that can be held with ``Hold``."""
    llmos = HeldLlmos.start()
    kka = HeldPykka.start()
    bare = Bare()
    return {
        "llmos": (llmos.tell, lambda: llmos.ask("count", timeout=120).get(), llmos),
        "pykka": (kka.tell, lambda: kka.ask("count", timeout=120), kka),
        "limit": (bare.tell, bare.sync, bare),
    }


def each_side(tell: Callable[[Any], None], sync: Callable[[], None], n: int) -> tuple[float, float]:
    """(sender alone, actor alone), ns per message: tells to the held actor, then its drain."""
    msgs = [Ping(i) for i in range(n)]
    GATE.clear()
    tell(Hold(0))
    start = time.perf_counter()
    for m in msgs:
        tell(m)
    sent = time.perf_counter()
    GATE.set()
    drain_start = time.perf_counter()
    sync()
    end = time.perf_counter()
    return (sent - start) / n * 1e9, (end - drain_start) / n * 1e9


def together(
    tells: list[Callable[[Any], None]], syncs: list[Callable[[], None]], n: int
) -> tuple[float, float]:
    """(wall, sender CPU), ns per tell, with the actors running beside the sender."""
    msgs = [Ping(i) for i in range(n)]
    width = len(tells)
    cpu = time.thread_time()
    start = time.perf_counter()
    for i, m in enumerate(msgs):
        tells[i % width](m)
    sender_cpu = time.thread_time() - cpu
    for sync in syncs:
        sync()
    wall = time.perf_counter() - start
    return wall / n * 1e9, sender_cpu / n * 1e9


def ask_costs(ask: Callable[[Any], Any], n: int) -> tuple[float, float]:
    """(wall, asker CPU), ns per ask round trip."""
    msg = Ping(1)
    cpu = time.thread_time()
    start = time.perf_counter()
    for _ in range(n):
        ask(msg)
    return (time.perf_counter() - start) / n * 1e9, (time.thread_time() - cpu) / n * 1e9


def steps(n: int) -> dict[str, float]:
    """The sender's steps of an llmos tell, ns each (a tell's other work is the call itself)."""
    msg = Ping(1)
    box: queue.SimpleQueue[Any] = queue.SimpleQueue()
    monotonic = time.monotonic

    def best(fn: Callable[[], object]) -> float:
        return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e9

    empty = best(lambda: None)
    out = {
        "wire check (check_message)": best(lambda: check_message(msg)) - empty,
        "envelope, clock and put": best(lambda: box.put((msg, None, monotonic(), None))) - empty,
        "a bare put (the limit's sender)": best(lambda: box.put(msg)) - empty,
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tells", type=int, default=100_000)
    parser.add_argument("--asks", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hog", action="store_true", help="beside a process busy on one CPU")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}; cpus: {os.cpu_count()}")
    with hog_beside(args.hog):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    """Every round, and the tables."""
    kinds = contenders()
    spread: dict[str, list[Any]] = {
        "llmos": [LlmosCounter.start() for _ in range(10)],
        "pykka": [PykkaCounter.start() for _ in range(10)],
        "limit": [Bare() for _ in range(10)],
    }
    try:
        alone: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        both: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        ten: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        asked: dict[str, list[tuple[float, float]]] = {"llmos": [], "pykka": []}
        llmos_ref, pykka_ref = kinds["llmos"][2], kinds["pykka"][2]
        ask_of: dict[str, Callable[[Any], Any]] = {
            "llmos": lambda m: llmos_ref.ask(m, timeout=10).get(),
            "pykka": lambda m: pykka_ref.ask(m, timeout=10),
        }

        def tells_of(refs: list[Any]) -> list[Callable[[Any], None]]:
            return [r.tell for r in refs]

        def syncs_of(name: str, refs: list[Any]) -> list[Callable[[], None]]:
            if name == "llmos":
                return [lambda r=r: r.ask("count", timeout=120).get() for r in refs]  # type: ignore[misc]
            if name == "pykka":
                return [lambda r=r: r.ask("count", timeout=120) for r in refs]  # type: ignore[misc]
            return [r.sync for r in refs]

        for round_ in range(args.rounds + 1):  # round 0 warms up, uncounted
            for name, (tell, sync, _ref) in kinds.items():
                side = each_side(tell, sync, args.tells)
                run = together([tell], [sync], args.tells)
                wide = together(tells_of(spread[name]), syncs_of(name, spread[name]), args.tells)
                if round_:
                    alone[name].append(side)
                    both[name].append(run)
                    ten[name].append(wide)
            for name, ask in ask_of.items():
                cost = ask_costs(ask, args.asks)
                if round_:
                    asked[name].append(cost)
        print(f"load average at end: {os.getloadavg()}{'  (with a CPU hog)' if args.hog else ''}")
        print("ns per message, the least disturbed of the rounds:")
        print(
            f"  {'':<8}{'sender alone':>14}{'actor alone':>13}{'sum':>8}"
            f"{'1 actor wall':>14}{'sender CPU':>12}{'10 actors wall':>16}{'sender CPU':>12}"
        )
        for name in kinds:
            send = min(s for s, _ in alone[name])
            drain = min(d for _, d in alone[name])
            wall = min(w for w, _ in both[name])
            cpu = min(c for _, c in both[name])
            wide_wall = min(w for w, _ in ten[name])
            wide_cpu = min(c for _, c in ten[name])
            print(
                f"  {name:<8}{send:>14.0f}{drain:>13.0f}{send + drain:>8.0f}"
                f"{wall:>14.0f}{cpu:>12.0f}{wide_wall:>16.0f}{wide_cpu:>12.0f}"
            )
        print("the sender's steps of an llmos tell, ns each:")
        for label, ns in steps(200_000).items():
            print(f"  {label:<34}{ns:>6.0f}")
        print("ask round trip, ns (wall / asker CPU):")
        for name, costs in asked.items():
            print(f"  {name:<8}{min(w for w, _ in costs):>10.0f} / {min(c for _, c in costs):.0f}")
    finally:
        GATE.set()
        for bare in spread["limit"]:
            bare.close()
        kinds["limit"][2].close()
        actors.stop_all()
        pykka.ActorRegistry.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
