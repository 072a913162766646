"""Local actors: llmos against stock pykka and against the physical limit, interleaved.

Each block runs every contender once, in an order that alternates between blocks, so drift on
a noisy machine hits all alike; the figures are min / median / max of the per-block ratios.

- tell throughput until every tell was handled, to one actor and spread round robin over 1, 10,
  100 and 1,000 actors, as a ratio to stock pykka and to the physical limit: a bare
  ``queue.SimpleQueue`` producer/consumer thread pair calling a trivial function per message;
  for llmos actors that own a thread (the default) and for actors run in turns by a
  ``Dispatcher`` (``Dispatcher.shared()``'s settings: 4 threads, turns of 64); and, for the
  actors that own a thread, as a ratio to the same bare pair with one consumer thread per
  actor (what any design with a thread per actor, pykka's included, is bounded by);
- ask round trip, as a ratio to stock pykka and to a bare round trip (a SimpleQueue to a
  thread that releases the asker's lock: the two thread wake-ups an ask cannot avoid);
- 1,000 concurrent ``ask_async`` from one event loop, as a ratio to a minimal bridge (one thread
  reading a SimpleQueue and answering through ``call_soon_threadsafe``), and to the same bridge
  with each ask behind a coroutine (the Task gather makes for each, which ``ask_async``, a
  future, does not need);
- the cost of the wire check (``check_message``) a local tell pays, per message.

Targets (issue 14): tells >= 2.5x pykka and >= 50% of the limit; asks <= 0.8x pykka;
ask_async <= 1.5x the bridge.

With ``--contenders``, Thespian (``simpleSystemBase``), a Ray actor and autogen-core's
``SingleThreadedAgentRuntime`` join the blocks where installed (``pip install thespian ray
autogen-core`` into the benchmark's environment: autogen-core pins protobuf ~=5.29, so install
it where that does not downgrade what llmos's tracing uses; each missing one is skipped with
the reason; ``_contenders.py`` says what each measures): tell throughput to one actor until
all were handled and ask round trip, as llmos/contender ratios (of throughput for tells, of
time for asks). They are optional because a
Ray tell or ask costs about a millisecond, which makes the run minutes longer.

``--hog`` runs it all beside a process that keeps one CPU busy (the machine under load).

Everything built before the blocks is frozen out of garbage collection (``gc.freeze()``), so a
full collection costs the same in every block whoever it lands on.

``profile_actors.py`` splits the costs behind these ratios by thread and by step.

Run: ``python benchmarks/bench_actors.py [--blocks 7] [--tells 20000] [--asks 2000] [--contenders]
[--hog]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import queue
import statistics
import threading
import time
import timeit
from collections.abc import Callable
from typing import Any

import pykka
from _contenders import Contender, not_compared, start_contenders
from _load import hog_beside

import llmos.actors as actors
from llmos.actors import Actor, Dispatcher, handler, message
from llmos.actors.lowlevel import check_message

SPREADS = (1, 10, 100, 1000)


@message("bench.Ping")
class Ping:
    n: int


class LlmosCounter(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    @handler(Ping)
    def ping(self, msg: Ping) -> int:
        self.count += 1
        return msg.n

    def on_receive(self, message: Any) -> Any:
        return self.count


POOL = Dispatcher(threads=4, batch=64, name="bench-pool")  # Dispatcher.shared()'s settings


class PooledCounter(LlmosCounter):
    actor_dispatcher = POOL


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ping):
            self.count += 1
            return message.n
        return self.count


class QueueThread:
    """A thread serving a SimpleQueue (``_run``) until ``close`` puts None: the baselines."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


class Limit(QueueThread):
    """The physical limit: one consumer thread taking from a SimpleQueue, one call each."""

    def __init__(self) -> None:
        self.count = 0
        super().__init__()

    def _handle(self, msg: Any) -> None:
        self.count += 1

    def _run(self) -> None:
        get, handle = self.queue.get, self._handle
        while True:
            msg = get()
            if msg is None:
                return
            if type(msg) is threading.Event:
                msg.set()
                continue
            handle(msg)

    def tell(self, msg: Any) -> None:
        self.queue.put(msg)

    def sync(self) -> None:
        done = threading.Event()
        self.queue.put(done)
        done.wait()


class BareAsk(QueueThread):
    """The floor of an ask round trip: a SimpleQueue to a thread that releases the asker's lock."""

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            item[1].release()

    def ask(self, msg: Any) -> None:
        done = threading.Lock()
        done.acquire()
        self.queue.put((msg, done))
        done.acquire()


def tell_rate(tells: list[Callable[[Any], None]], syncs: list[Callable[[], None]], n: int) -> float:
    """Tells/s until all were handled: n tells round robin over the targets, then sync all."""
    msgs = [Ping(i) for i in range(n)]
    width = len(tells)
    start = time.perf_counter()
    if width == 1:
        tell = tells[0]
        for m in msgs:
            tell(m)
    else:
        for i, m in enumerate(msgs):
            tells[i % width](m)
    for sync in syncs:
        sync()
    return n / (time.perf_counter() - start)


def ask_latency(ask: Callable[[Ping], Any], n: int) -> float:
    msg = Ping(1)
    start = time.perf_counter()
    for _ in range(n):
        ask(msg)
    return (time.perf_counter() - start) / n


async def llmos_async_asks(ref: actors.LocalRef, n: int) -> float:
    msg = Ping(1)
    start = time.perf_counter()
    await asyncio.gather(*(ref.ask_async(msg, timeout=60) for _ in range(n)))
    return time.perf_counter() - start


class Bridge(QueueThread):
    """The minimal thread-to-asyncio bridge: a thread answering through call_soon_threadsafe."""

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            future, msg = item
            future.get_loop().call_soon_threadsafe(future.set_result, msg.n)

    async def asks(self, n: int) -> float:
        loop = asyncio.get_running_loop()
        msg = Ping(1)
        start = time.perf_counter()
        futures = []
        for _ in range(n):
            future = loop.create_future()
            self.queue.put((future, msg))
            futures.append(future)
        await asyncio.gather(*futures)
        return time.perf_counter() - start

    async def coroutine_asks(self, n: int) -> float:
        """The same, each ask behind a coroutine: gather wraps each in a Task, the cost any
        ``async def`` ask pays over a bare future (``ask_async`` returns a future instead)."""
        loop = asyncio.get_running_loop()
        msg = Ping(1)

        async def one() -> Any:
            future = loop.create_future()
            self.queue.put((future, msg))
            return await future

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - start


def spread(cls: type[Any], width: int, llmos: bool) -> tuple[list[Any], list[Any], list[Any]]:
    refs = [cls.start() for _ in range(width)]
    tells = [r.tell for r in refs]
    if llmos:
        syncs = [lambda r=r: r.ask("count", timeout=120).get() for r in refs]
    else:
        syncs = [lambda r=r: r.ask("count", timeout=120) for r in refs]
    return refs, tells, syncs


def summary(label: str, ratios: list[float], target: str = "") -> None:
    lo, med, hi = min(ratios), statistics.median(ratios), max(ratios)
    print(f"  {label:<44} min {lo:6.2f}  median {med:6.2f}  max {hi:6.2f}  {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--tells", type=int, default=20_000)
    parser.add_argument("--asks", type=int, default=2_000)
    parser.add_argument("--concurrent", type=int, default=1_000)
    parser.add_argument(
        "--contenders",
        action="store_true",
        help="also compare Thespian, a Ray actor and autogen-core, where installed",
    )
    parser.add_argument("--hog", action="store_true", help="beside a process busy on one CPU")
    args = parser.parse_args(argv)
    print(f"load average at start: {os.getloadavg()}; cpus: {os.cpu_count()}")
    with hog_beside(args.hog):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    """Every block, alternating, and the summary."""
    limit = Limit()
    bare = BareAsk()
    bridge = Bridge()
    loop = asyncio.new_event_loop()
    groups: dict[int, dict[str, tuple[list[Any], list[Any], list[Any]]]] = {}
    contenders: list[Contender] = []
    skipped: list[str] = []
    try:
        if args.contenders:
            # Started first: Ray's processes are up (and idle) through every block alike.
            contenders, skipped = start_contenders()
        for width in SPREADS:
            limits = [Limit() for _ in range(width)]
            groups[width] = {
                "llmos": spread(LlmosCounter, width, True),
                "pooled": spread(PooledCounter, width, True),
                "pykka": spread(PykkaCounter, width, False),
                "threads": (limits, [x.tell for x in limits], [x.sync for x in limits]),
            }
        one_llmos, one_pykka = groups[1]["llmos"][0][0], groups[1]["pykka"][0][0]

        def llmos_ask(m: Ping) -> None:
            one_llmos.ask(m, timeout=10).get()

        def pykka_ask(m: Ping) -> None:
            one_pykka.ask(m, timeout=10)

        # Warm up every path once.
        tell_rate([limit.tell], [limit.sync], 2000)
        for width in SPREADS:
            for _refs, tells, syncs in groups[width].values():
                tell_rate(tells, syncs, 2000)
        ask_latency(llmos_ask, 200)
        ask_latency(pykka_ask, 200)
        ask_latency(bare.ask, 200)
        for contender in contenders:
            contender.tell_rate(2000)
            contender.ask_latency(200)
        loop.run_until_complete(llmos_async_asks(one_llmos, 100))
        loop.run_until_complete(bridge.asks(100))
        loop.run_until_complete(bridge.coroutine_asks(100))
        # The 4,000+ actors and threads built above are scanned by every full collection,
        # which then lands in whichever block runs; frozen, they are not (for every contender).
        gc.collect()
        gc.freeze()

        vs_pykka: dict[int, list[float]] = {w: [] for w in SPREADS}
        vs_limit: dict[int, list[float]] = {w: [] for w in SPREADS}
        pooled_vs_pykka: dict[int, list[float]] = {w: [] for w in SPREADS}
        pooled_vs_limit: dict[int, list[float]] = {w: [] for w in SPREADS}
        vs_threads: dict[int, list[float]] = {w: [] for w in SPREADS}
        asks: list[float] = []
        asks_vs_bare: list[float] = []
        bridged: list[float] = []
        bridged_coroutines: list[float] = []
        named = {c.name: c for c in contenders}
        tells_vs = {c.name: list[float]() for c in contenders}
        asks_vs = {c.name: list[float]() for c in contenders}
        ask_of = {
            "llmos": lambda n: ask_latency(llmos_ask, n),
            "pykka": lambda n: ask_latency(pykka_ask, n),
            "bare": lambda n: ask_latency(bare.ask, n),
        } | {c.name: c.ask_latency for c in contenders}
        for block in range(args.blocks):
            flip = block % 2 == 1
            rates: dict[str, float] = {}
            rates["limit"] = tell_rate([limit.tell], [limit.sync], args.tells)
            for width in SPREADS:
                order = ["llmos", "pooled", "pykka", "threads"]
                order += list(named) if width == 1 else []
                for who in reversed(order) if flip else order:
                    if who in named:
                        rates[who] = named[who].tell_rate(args.tells)
                        continue
                    _refs, tells, syncs = groups[width][who]
                    rates[f"{who}{width}"] = tell_rate(tells, syncs, args.tells)
                vs_pykka[width].append(rates[f"llmos{width}"] / rates[f"pykka{width}"])
                vs_limit[width].append(rates[f"llmos{width}"] / rates["limit"])
                pooled_vs_pykka[width].append(rates[f"pooled{width}"] / rates[f"pykka{width}"])
                pooled_vs_limit[width].append(rates[f"pooled{width}"] / rates["limit"])
                vs_threads[width].append(rates[f"llmos{width}"] / rates[f"threads{width}"])
            order = list(ask_of)
            latency = {who: ask_of[who](args.asks) for who in (reversed(order) if flip else order)}
            la, pa = latency["llmos"], latency["pykka"]
            async_of = {
                "llmos": lambda: llmos_async_asks(one_llmos, args.concurrent),
                "bridge": lambda: bridge.asks(args.concurrent),
                "coroutines": lambda: bridge.coroutine_asks(args.concurrent),
            }
            order = list(async_of)
            took = {
                who: loop.run_until_complete(async_of[who]())
                for who in (reversed(order) if flip else order)
            }
            a, b = took["llmos"], took["bridge"]
            asks.append(la / pa)
            asks_vs_bare.append(la / latency["bare"])
            for name in named:
                tells_vs[name].append(rates["llmos1"] / rates[name])
                asks_vs[name].append(la / latency[name])
            bridged.append(a / b)
            bridged_coroutines.append(a / took["coroutines"])
            print(
                f"block {block}: limit {rates['limit']:>10,.0f}/s  llmos "
                + " ".join(f"{w}:{rates[f'llmos{w}']:,.0f}" for w in SPREADS)
                + "  pooled "
                + " ".join(f"{w}:{rates[f'pooled{w}']:,.0f}" for w in SPREADS)
                + "  pykka "
                + " ".join(f"{w}:{rates[f'pykka{w}']:,.0f}" for w in SPREADS)
                + "  bare threads "
                + " ".join(f"{w}:{rates[f'threads{w}']:,.0f}" for w in SPREADS)
                + f"\n         ask llmos/pykka/bare {la * 1e6:.1f}/{pa * 1e6:.1f}/"
                + f"{latency['bare'] * 1e6:.1f} µs  async llmos/bridge/coroutines {a * 1e3:.1f}/"
                + f"{b * 1e3:.1f}/{took['coroutines'] * 1e3:.1f} ms"
            )
            if named:
                print(
                    "         "
                    + "  ".join(
                        f"{name}: tell {rates[name]:,.0f}/s ask {latency[name] * 1e6:,.1f} µs"
                        for name in named
                    )
                )

        check_ns = min(timeit.repeat(lambda: check_message(Ping(1)), number=20_000, repeat=5))
        base_ns = min(timeit.repeat(lambda: Ping(1), number=20_000, repeat=5))
        per_check = (check_ns - base_ns) / 20_000 * 1e9
        print(f"load average at end: {os.getloadavg()}{'  (with a CPU hog)' if args.hog else ''}")
        print("per-block ratios (min / median / max):")
        for width in SPREADS:
            summary(f"tell e2e over {width} actor(s), llmos/pykka", vs_pykka[width], ">= 2.5")
            summary("  same, pooled llmos/pykka", pooled_vs_pykka[width], ">= 2.5")
            summary(f"tell e2e over {width} actor(s), llmos/limit", vs_limit[width], ">= 0.5")
            summary("  same, pooled llmos/limit", pooled_vs_limit[width], ">= 0.5")
            summary(f"  llmos/{width} bare consumer thread(s)", vs_threads[width])
        summary("ask round trip, llmos/pykka", asks, "<= 0.8")
        summary("ask round trip, llmos/bare (time)", asks_vs_bare)
        summary(f"{args.concurrent} concurrent ask_async, llmos/bridge", bridged, "<= 1.5")
        summary("  same, llmos/bridge behind coroutines", bridged_coroutines)
        print(f"  wire check of a local tell (check_message): {per_check:.0f} ns per message")
        for name in named:
            summary(f"tell e2e to 1 actor, llmos/{name} (rate)", tells_vs[name])
            summary(f"ask round trip, llmos/{name} (time)", asks_vs[name])
        for contender in contenders:
            print(f"  {contender.title}: {contender.measures}")
        for line in skipped if args.contenders else not_compared():
            print(f"  {line}")
    finally:
        with contextlib.ExitStack() as closing:  # every contender is closed, even if one fails
            for contender in contenders:
                closing.callback(contender.close)
            loop.close()
            bridge.close()
            bare.close()
            limit.close()
            for group in groups.values():
                for x in group["threads"][0]:
                    closing.callback(x.close)
            actors.stop_all()
            POOL.close()
            pykka.ActorRegistry.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
