"""Kernel figures: restart latency, pool routing overhead, and 10,000 idle actors in one process.

- restart latency: from the failure (just before the handler raises) to the first message
  handled by the new instance, median and p99 over ``--crashes`` crashes. Two cases: one actor
  crashing again and again (backoff off, so only the restart path is timed), and many actors
  crashing once each under the kernel's default policy (first restart immediate).
  Target: p99 <= 5 ms.
- routing overhead: tells and asks through a one-member pool ref vs the member's own ref
  (the same actor behind both, so the difference is the routing), for each router.
- scale: ``--actors`` idle actors spawned under the kernel, the time it takes (target
  <= 5 s for 10,000), memory per actor (RSS and address space), and the same number of bare
  ``threading.Thread`` starts as the floor; then the kernel's shutdown time.

Run: ``python benchmarks/bench_kernel.py [--crashes 200] [--actors 10000] [--stack-kib 0]``
"""

from __future__ import annotations

import argparse
import logging
import queue
import statistics
import threading
import time
from typing import Any

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler, message
from llmos.kernel import Supervisor, kernel


@message("bench.Crash")
class Crash:
    pass


@message("bench.Probe")
class Probe:
    pass


@message("bench.Ping")
class Ping:
    key: int


FAILED_AT: list[float] = []
HANDLED_AT: list[float] = []
HANDLED = threading.Event()


class Crasher(Actor):
    @handler(Crash)
    def crash(self, msg: Crash) -> None:
        FAILED_AT.append(time.perf_counter())
        raise RuntimeError("crash on purpose")

    @handler(Probe)
    def probe(self, msg: Probe) -> None:
        HANDLED_AT.append(time.perf_counter())
        HANDLED.set()


class Echo(Actor):
    @handler(Ping)
    def ping(self, msg: Ping) -> int:
        return msg.key


class Idle(Actor):
    pass


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def crash_once(ref: ActorRef) -> float:
    HANDLED.clear()
    ref.tell(Crash())
    ref.tell(Probe())  # queued behind the crash: the new instance's first message
    if not HANDLED.wait(10):
        raise RuntimeError("the restarted actor never handled its first message")
    return HANDLED_AT[-1] - FAILED_AT[-1]


def restart_latency(crashes: int) -> None:
    logging.getLogger("llmos").setLevel(logging.CRITICAL)  # 2 x crashes tracebacks otherwise
    k = kernel()
    # The kernel's own budget is 1 restart in 5 s per child; a crash loop needs its own
    # supervisor, with backoff off so that only the restart path is timed.
    sup = k.spawn(Supervisor, name="bench-sup", max_restarts=10**6, within=1.0, backoff=None)
    one = k.spawn(Crasher, name="looping", supervisor=sup)
    loop = [crash_once(one) for _ in range(crashes)]
    fresh = [crash_once(k.spawn(Crasher)) for _ in range(crashes)]
    for label, values in (("one actor, crash loop", loop), ("each actor once", fresh)):
        ms = [v * 1000 for v in values]
        print(
            f"restart latency ({label}, {len(ms)} crashes): median {statistics.median(ms):.3f} ms,"
            f" p99 {percentile(ms, 99):.3f} ms, max {max(ms):.3f} ms  (target p99 <= 5 ms)"
        )
    k.shutdown()


def timed_tells(ref: ActorRef, sync: ActorRef, n: int) -> float:
    msgs = [Ping(i % 100) for i in range(n)]  # 100 keys: sessions, for consistent_hash
    start = time.perf_counter()
    for m in msgs:
        ref.tell(m)
    sync.ask(Ping(-1), timeout=60).get()
    return (time.perf_counter() - start) / n


def timed_asks(ref: ActorRef, n: int) -> float:
    msg = Ping(1)
    start = time.perf_counter()
    for _ in range(n):
        ref.ask(msg, timeout=10).get()
    return (time.perf_counter() - start) / n


def routing_overhead(tells: int, asks: int, blocks: int) -> None:
    k = kernel()
    for router in ("round_robin", "least_loaded", "consistent_hash"):
        pool = k.spawn_pool(Echo, size=1, router=router, hash_key="key")
        [member] = pool.members()
        rows = []
        for _ in range(blocks):
            direct_t = timed_tells(member, member, tells)
            pooled_t = timed_tells(pool, member, tells)
            direct_a = timed_asks(member, asks)
            pooled_a = timed_asks(pool, asks)
            rows.append((pooled_t / direct_t, pooled_a / direct_a, pooled_t, direct_t))
        columns = zip(*rows, strict=True)
        tell_ratio, ask_ratio, pooled, direct = (statistics.median(c) for c in columns)
        print(
            f"pool routing ({router}): tell {tell_ratio:.2f}x a direct ref ({pooled * 1e6:.2f} "
            f"vs {direct * 1e6:.2f} us per tell, medians), ask round trip {ask_ratio:.2f}x"
        )
        pool.stop(timeout=10)
    k.shutdown()


def memory() -> tuple[int, int]:
    """(RSS, address space) of this process in bytes, from /proc (Linux)."""
    fields: dict[str, int] = {}
    try:
        with open("/proc/self/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmSize"):
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return rss, 0
    return fields.get("VmRSS", 0), fields.get("VmSize", 0)


def bare_threads(n: int) -> float:
    """The floor: n plain threads, each blocked on its own queue like an idle actor."""
    queues: list[queue.SimpleQueue[Any]] = []
    threads = []
    start = time.perf_counter()
    for _ in range(n):
        q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        t = threading.Thread(target=q.get, name="llmos:bench-bare", daemon=True)
        t.start()
        queues.append(q)
        threads.append(t)
    took = time.perf_counter() - start
    for q in queues:
        q.put(None)
    for t in threads:
        t.join()
    return took


def scale(n: int) -> None:
    floor = bare_threads(n)
    k = kernel()
    rss0, vm0 = memory()
    start = time.perf_counter()
    for _ in range(n):
        k.spawn(Idle)
    took = time.perf_counter() - start
    rss1, vm1 = memory()
    print(
        f"scale: {n} idle actors spawned under the kernel in {took:.2f} s "
        f"({took / n * 1e6:.0f} us each; target <= 5 s for 10,000); bare threads: "
        f"{floor:.2f} s, so {took / floor:.2f}x the floor"
    )
    print(
        f"memory per idle actor: {(rss1 - rss0) / n / 1024:.1f} KiB RSS, "
        f"{(vm1 - vm0) / n / 1024:.0f} KiB address space (thread stack size "
        f"{threading.stack_size() // 1024 or 'default'} KiB)"
    )
    start = time.perf_counter()
    k.shutdown(timeout=120)
    print(f"shutdown of {n} actors: {time.perf_counter() - start:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crashes", type=int, default=200)
    parser.add_argument("--actors", type=int, default=10_000)
    parser.add_argument("--tells", type=int, default=20_000)
    parser.add_argument("--asks", type=int, default=2_000)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument(
        "--stack-kib", type=int, default=0, help="thread stack size for the scale run (0: default)"
    )
    args = parser.parse_args(argv)
    try:
        restart_latency(args.crashes)
        routing_overhead(args.tells, args.asks, args.blocks)
        if args.stack_kib:
            threading.stack_size(args.stack_kib * 1024)
        scale(args.actors)
    finally:
        actors.stop_all(timeout=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
