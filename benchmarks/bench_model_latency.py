"""Model actor latency: a lone request against ``model.generate``, and a late joiner's wait.

1. Overhead: one request through a ModelActor against Hugging Face ``model.generate`` called
   directly on the same loaded model, same prompt, same number of new tokens (greedy). The two
   alternate round by round; the ratio is actor seconds / generate seconds (target <= 1.05x).
2. Late joiner: while a long request (96 new tokens) is generating, a short one is sent the
   moment the long one's first chunk arrives; its time to first token (TTFT) is measured from
   its send. With continuous batching it joins the running batch at the next step; a model that
   batches only at batch boundaries makes it wait for the long request to finish.
3. Oversized prompt: how long a 10.8 MB prompt takes to be refused (before tokenizing), from
   the ask to its error, over ``4 x rounds`` asks. Shown twice: with the prompt built once,
   and built anew just before each ask. The refusal is the same work both ways; building 10.8
   MB costs the asking thread about 10 ms of CPU right before it waits, and on a loaded
   machine the OS then lets it wait its turn for the CPU before it sees the answer.

Prints min / median / max over the rounds and the load average.

Run: ``python benchmarks/bench_model_latency.py [--rounds 5] [--tokens 48]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from typing import Any

import torch

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler
from llmos.models import Completion, Generate, ModelActor, ModelError, TokenChunk, shared_model

STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]
SHORT = [{"role": "user", "content": "What is the capital of France?"}]


class FirstChunk(Actor):
    """Sets an event and records the time when each request's first chunk arrives."""

    def __init__(self, first: dict[str, float], seen: dict[str, threading.Event]) -> None:
        super().__init__()
        self.first = first
        self.seen = seen

    @handler(TokenChunk)
    def chunk(self, msg: TokenChunk) -> None:
        if msg.request_id not in self.first:
            self.first[msg.request_id] = time.perf_counter()
            self.seen[msg.request_id].set()

    @handler(Completion)
    def done(self, msg: Completion) -> None:
        pass


def spread(values: list[float], unit: str = "", digits: int = 3) -> str:
    fmt = f"{{:.{digits}f}}{unit}"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def direct(loaded: Any, tokens: int) -> tuple[float, int]:
    tok = loaded.tokenizer
    text = tok.apply_chat_template(STORY, tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(loaded.device)
    mask = torch.ones_like(ids)
    start = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return time.perf_counter() - start, int(out.shape[1] - ids.shape[1])


def through_actor(model: ActorRef, tokens: int) -> tuple[float, int]:
    start = time.perf_counter()
    done = model.ask(Generate(messages=STORY, max_new_tokens=tokens), timeout=600).get()
    return time.perf_counter() - start, int(done.completion_tokens)


def late_joiner(model: ActorRef, long_tokens: int) -> tuple[float, float]:
    """Returns (TTFT of the late request, TTFT of the same request on an idle model)."""
    first: dict[str, float] = {}
    seen = {k: threading.Event() for k in ("long", "late", "idle")}
    sink = FirstChunk.start(first, seen)
    try:
        idle_sent = time.perf_counter()
        model.ask(
            Generate(messages=SHORT, max_new_tokens=4, stream_to=sink, request_id="idle"), 600
        ).get()
        idle = first["idle"] - idle_sent
        long = model.ask(
            Generate(messages=STORY, max_new_tokens=long_tokens, stream_to=sink, request_id="long"),
            timeout=600,
        )
        seen["long"].wait(600)
        sent = time.perf_counter()
        late = model.ask(
            Generate(messages=SHORT, max_new_tokens=4, stream_to=sink, request_id="late"), 600
        )
        seen["late"].wait(600)
        late.get()
        long.get()
        return first["late"] - sent, idle
    finally:
        sink.stop(timeout=10)


def huge_prompt() -> list[dict[str, str]]:
    return [{"role": "user", "content": "word " * 2_160_000}]  # 10.8 MB


def refuse_huge(model: ActorRef, huge: list[dict[str, str]] | None = None) -> float:
    huge = huge or huge_prompt()
    start = time.perf_counter()
    try:
        model.ask(Generate(messages=huge, max_new_tokens=4), timeout=600).get()
    except ModelError:
        pass
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args(argv)

    loaded = shared_model(progress=True)
    print(
        f"model: {loaded.name} on {loaded.device} ({loaded.dtype}); torch threads "
        f"{torch.get_num_threads()}"
    )
    model = ModelActor.start(name="model")
    try:
        through_actor(model, 4)  # warm up both paths
        direct(loaded, 4)
        ratios, actor_s, direct_s, counts = [], [], [], set()
        for r in range(args.rounds):
            pair: dict[str, tuple[float, int]] = {}
            for name in ("actor", "direct") if r % 2 == 0 else ("direct", "actor"):
                pair[name] = (
                    through_actor(model, args.tokens)
                    if name == "actor"
                    else direct(loaded, args.tokens)
                )
            (a, an), (d, dn) = pair["actor"], pair["direct"]
            counts.add((an, dn))
            # Per token, in case one path stopped early at an end-of-sequence token.
            ratios.append((a / an) / (d / dn))
            actor_s.append(a)
            direct_s.append(d)
        print(
            f"1. a lone request, {args.tokens} new tokens, greedy ({args.rounds} rounds, "
            f"tokens actor/direct: {sorted(counts)})"
        )
        print(f"   actor s          {spread(actor_s)}")
        print(f"   model.generate s {spread(direct_s)}")
        print(f"   ratio (min / median / max) {spread(ratios, 'x')} (target <= 1.05x)")

        late, idle = [], []
        for _ in range(args.rounds):
            lt, it = late_joiner(model, 96)
            late.append(lt)
            idle.append(it)
        print("2. time to first token of a request sent while a 96-token request generates")
        print(f"   late joiner s    {spread(late)}")
        print(f"   on an idle model {spread(idle)}")

        huge = huge_prompt()
        once = [refuse_huge(model, huge) for _ in range(4 * args.rounds)]
        anew = [refuse_huge(model) for _ in range(4 * args.rounds)]
        print("3. a 10.8 MB prompt refused after (s; target < 0.010)")
        print(f"   built once        {spread(once, '', 5)}")
        print(f"   built before each {spread(anew, '', 5)}")
    finally:
        actors.stop_all()
    print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
