"""Local actor throughput and latency: llmos vs stock pykka, interleaved in one process.

Prints, block by block, tell throughput as the sender sees it (N tells, until the last tell
returns), tell throughput until every tell was handled (then one ask to sync), and ask
round-trip latency for both, and the median of the per-block ratios.
Targets: tell throughput >= 3x pykka; ask round trip <= 0.8x pykka.

Run: ``python benchmarks/bench_actors.py [--blocks 7] [--tells 20000] [--asks 2000]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import pykka

import llmos.actors as actors
from llmos.actors import Actor, handler, message


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


class PykkaCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Ping):
            self.count += 1
            return message.n
        return self.count


def tell_rate(ref: Any, n: int, sync: Any) -> tuple[float, float]:
    """(tells/s as seen by the sender, tells/s until all were handled)."""
    msgs = [Ping(i) for i in range(n)]
    start = time.perf_counter()
    for m in msgs:
        ref.tell(m)
    sent = time.perf_counter()
    sync()
    done = time.perf_counter()
    return n / (sent - start), n / (done - start)


def ask_latency(ask: Any, n: int) -> float:
    msg = Ping(1)
    start = time.perf_counter()
    for _ in range(n):
        ask(msg)
    return (time.perf_counter() - start) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--tells", type=int, default=20_000)
    parser.add_argument("--asks", type=int, default=2_000)
    args = parser.parse_args(argv)

    mine = LlmosCounter.start()
    theirs = PykkaCounter.start()
    try:

        def mine_sync() -> None:
            mine.ask("count", timeout=60).get()

        def theirs_sync() -> None:
            theirs.ask("count", timeout=60)

        def mine_ask(m: Ping) -> None:
            mine.ask(m, timeout=10).get()

        def theirs_ask(m: Ping) -> None:
            theirs.ask(m, timeout=10)

        # Warm up both.
        tell_rate(mine, 2000, mine_sync)
        tell_rate(theirs, 2000, theirs_sync)
        ask_latency(mine_ask, 200)
        ask_latency(theirs_ask, 200)

        send_ratios, tell_ratios, ask_ratios = [], [], []
        print(
            f"{'block':>5} {'llmos send/s':>13} {'pykka send/s':>13} {'ratio':>6}   "
            f"{'llmos e2e/s':>12} {'pykka e2e/s':>12} {'ratio':>6}   "
            f"{'llmos ask µs':>12} {'pykka ask µs':>12} {'ratio':>6}"
        )
        for block in range(args.blocks):
            # Alternate who goes first so drift on a noisy machine hits both alike.
            if block % 2 == 0:
                ls, lt = tell_rate(mine, args.tells, mine_sync)
                ps, pt = tell_rate(theirs, args.tells, theirs_sync)
                la = ask_latency(mine_ask, args.asks)
                pa = ask_latency(theirs_ask, args.asks)
            else:
                ps, pt = tell_rate(theirs, args.tells, theirs_sync)
                ls, lt = tell_rate(mine, args.tells, mine_sync)
                pa = ask_latency(theirs_ask, args.asks)
                la = ask_latency(mine_ask, args.asks)
            send_ratios.append(ls / ps)
            tell_ratios.append(lt / pt)
            ask_ratios.append(la / pa)
            print(
                f"{block:>5} {ls:>13,.0f} {ps:>13,.0f} {ls / ps:>6.2f}   "
                f"{lt:>12,.0f} {pt:>12,.0f} {lt / pt:>6.2f}   "
                f"{la * 1e6:>12.1f} {pa * 1e6:>12.1f} {la / pa:>6.2f}"
            )
        print(
            "median tell throughput ratio llmos/pykka, sender side: "
            f"{statistics.median(send_ratios):.2f}x (target >= 3.0x)"
        )
        print(
            "median tell throughput ratio llmos/pykka, until handled: "
            f"{statistics.median(tell_ratios):.2f}x"
        )
        print(
            "median ask round-trip ratio llmos/pykka: "
            f"{statistics.median(ask_ratios):.2f}x (target <= 0.8x)"
        )
    finally:
        actors.stop_all()
        pykka.ActorRegistry.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
