"""Model actor throughput: 8 concurrent requesters, batching vs one request at a time.

Two ModelActors share the same loaded weights in one process: one with max_batch_size=8, one
with max_batch_size=1. Eight requester threads each ask for 32 new tokens (greedy) at once; the
two contenders alternate rounds, and the median of the per-round ratios is reported, with time
to first token (from streamed chunks) for each.
Target on a 2-core CPU: batching >= 3x the tokens/s of one at a time.

Run: ``python benchmarks/bench_model.py [--rounds 3] [--tokens 32] [--requesters 8]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Any

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler
from llmos.models import Completion, Generate, ModelActor, TokenChunk, shared_model

QUESTIONS = [
    "Describe the sea in one sentence.",
    "Why is the sky blue?",
    "Give me a tip for learning to cook.",
    "What makes a good friend?",
    "Explain what a planet is.",
    "Write a short line about autumn.",
    "How do bees make honey?",
    "What is a computer?",
]


class FirstToken(Actor):
    """Records when the first chunk of each request arrives."""

    def __init__(self, first: dict[str, float]) -> None:
        super().__init__()
        self.first = first

    @handler(TokenChunk)
    def chunk(self, msg: TokenChunk) -> None:
        self.first.setdefault(msg.request_id, time.perf_counter())

    @handler(Completion)
    def done(self, msg: Completion) -> None:
        pass


def one_round(model: ActorRef, n: int, tokens: int) -> tuple[float, float]:
    """Returns (tokens per second, median time to first token)."""
    first: dict[str, float] = {}
    sink = FirstToken.start(first)
    results: list[Any] = [None] * n
    go = threading.Event()

    def requester(i: int) -> None:
        go.wait()
        request = Generate(
            messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
            max_new_tokens=tokens,
            stream_to=sink,
            requester=f"agent-{i}",
            request_id=f"r{i}",
        )
        results[i] = model.ask(request, timeout=600).get()

    threads = [threading.Thread(target=requester, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    sink.stop(timeout=10)
    generated = sum(r.completion_tokens for r in results)
    ttft = statistics.median(first[f"r{i}"] - start for i in range(n))
    return generated / wall, ttft


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--requesters", type=int, default=8)
    args = parser.parse_args(argv)

    loaded = shared_model(progress=True)
    print(f"model: {loaded.name} on {loaded.device} ({loaded.dtype}), from {loaded.source}")
    batched = ModelActor.start(max_batch_size=args.requesters, name="batched")
    single = ModelActor.start(max_batch_size=1, name="single")
    try:
        one_round(batched, 2, 4)  # warm up both
        one_round(single, 2, 4)
        ratios, rows = [], []
        for r in range(args.rounds):
            order = [(batched, "batched"), (single, "single")]
            if r % 2:
                order.reverse()
            got = {name: one_round(ref, args.requesters, args.tokens) for ref, name in order}
            (bt, bf), (st, sf) = got["batched"], got["single"]
            ratios.append(bt / st)
            rows.append((r, bt, bf, st, sf))
        print(f"{args.requesters} requesters x {args.tokens} new tokens, greedy")
        print(
            f"{'round':>5} {'batched tok/s':>14} {'TTFT s':>7} {'one-at-a-time tok/s':>20} "
            f"{'TTFT s':>7} {'ratio':>6}"
        )
        for r, bt, bf, st, sf in rows:
            print(f"{r:>5} {bt:>14.1f} {bf:>7.2f} {st:>20.1f} {sf:>7.2f} {bt / st:>6.2f}")
        print(
            f"batching speed-up min / median / max: {min(ratios):.2f}x / "
            f"{statistics.median(ratios):.2f}x / {max(ratios):.2f}x (target >= 3.0x)"
        )
        print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    finally:
        actors.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
