"""ModelEngine throughput: 8 requests in one batch vs the same 8 one at a time.

Eight chat requests ask for 32 new tokens each (greedy). Each round runs them once as one batch
of 8 and once as 8 batches of 1, in alternating order; the script reports the medians of
tokens/s, of time to first token (TTFT, from the start of the run to each request's first
streamed chunk, median over requests) and of the per-round throughput ratio. It also checks
that every batched answer equals its one-at-a-time answer.
Target on a 2-core CPU: the batch >= 3x the tokens/s of one at a time.

Run: ``python benchmarks/bench_model_engine.py [--rounds 3] [--tokens 32] [--threads N]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from llmos.models._engine import GenerateParams, GenerateResult, ModelEngine, load_model

# Open-ended questions, so that every answer runs to the token limit and both sides generate
# the same number of tokens.
QUESTIONS = [
    "Write a long story about a dragon who learns to cook.",
    "Describe in detail how a city changes from winter to summer.",
    "Explain, step by step, how to plan a vegetable garden.",
    "Write a letter to a friend about your trip to the mountains.",
    "Describe the history of sailing ships at length.",
    "Write a detailed recipe for bread, with every step.",
    "Tell a long tale about a robot exploring the ocean floor.",
    "Explain in detail how the seasons work on Earth.",
]


def run(
    engine: ModelEngine, requests: list[GenerateParams], batch_size: int
) -> tuple[list[GenerateResult], float, float]:
    """Returns (results, tokens per second, median time to first token in seconds)."""
    first: dict[int, float] = {}
    results: list[GenerateResult] = []
    start = time.perf_counter()
    for at in range(0, len(requests), batch_size):

        def on_token(i: int, _text: str, at: int = at) -> None:
            first.setdefault(at + i, time.perf_counter() - start)

        for r in engine.generate_batch(requests[at : at + batch_size], on_token=on_token):
            assert isinstance(r, GenerateResult), r
            results.append(r)
    elapsed = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in results)
    return results, tokens / elapsed, statistics.median(first.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    loaded = load_model()
    print(
        f"model {loaded.name} ({loaded.source}) on {loaded.device} {loaded.dtype}, loaded in "
        f"{time.perf_counter() - started:.1f} s; torch threads {torch.get_num_threads()}"
    )
    engine = ModelEngine(loaded)
    requests = [
        GenerateParams(messages=[{"role": "user", "content": q}], max_new_tokens=args.tokens)
        for q in QUESTIONS
    ]
    run(engine, requests[:2], 2)  # warm-up: first calls pay for kernel selection

    batched: list[tuple[float, float]] = []
    single: list[tuple[float, float]] = []
    ratios: list[float] = []
    for n in range(args.rounds):
        order = (8, 1) if n % 2 == 0 else (1, 8)
        figures: dict[int, tuple[float, float]] = {}
        answers: dict[int, list[str]] = {}
        for size in order:
            results, tps, ttft = run(engine, requests, size)
            figures[size] = (tps, ttft)
            answers[size] = [r.text for r in results]
        same = sum(a == b for a, b in zip(answers[8], answers[1], strict=True))
        batched.append(figures[8])
        single.append(figures[1])
        ratios.append(figures[8][0] / figures[1][0])
        print(
            f"round {n + 1}: batch of 8 {figures[8][0]:6.1f} tok/s TTFT {figures[8][1]:.2f} s | "
            f"one at a time {figures[1][0]:6.1f} tok/s TTFT {figures[1][1]:.2f} s | "
            f"ratio {ratios[-1]:.2f}x | identical answers {same}/8"
        )

    def med(values: list[tuple[float, float]], k: int) -> float:
        return statistics.median(v[k] for v in values)

    print(
        f"median over {args.rounds} rounds, 8 requests x {args.tokens} tokens: "
        f"batch of 8 {med(batched, 0):.1f} tok/s (TTFT {med(batched, 1):.2f} s), "
        f"one at a time {med(single, 0):.1f} tok/s (TTFT {med(single, 1):.2f} s), "
        f"ratio {statistics.median(ratios):.2f}x (target >= 3x)"
    )


if __name__ == "__main__":
    main()
