"""ModelActor on the real default model (SmolLM2-135M-Instruct), loaded once per session."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llmos.actors import ActorRef
from llmos.kernel import kernel
from llmos.models import ModelError
from llmos.models._actor import ModelActor, shared_model
from llmos.models._messages import (
    Completion,
    Generate,
    GetLedger,
    GetModelStats,
    ModelStats,
    Pause,
    Resume,
)
from llmos.models._sched import BudgetExceeded
from llmos.models._streaming import ModelStream, StreamStalled

pytestmark = pytest.mark.model

PROMPTS = [
    "What is the capital of France?",
    "Name a colour of the sky.",
    "Say hello in Spanish.",
    "What is 2 + 2?",
    "Give me a word that rhymes with cat.",
    "What animal says moo?",
    "Name a planet.",
    "Write the first letter of the alphabet.",
]


@pytest.fixture(scope="session")
def loaded() -> Any:
    return shared_model()  # first time converts the GGUF (~20-30 s), then cached


@pytest.fixture
def model(loaded: Any) -> Iterator[ActorRef]:
    yield ModelActor.start(name="model")


def chat(text: str, **kw: Any) -> Generate:
    return Generate(messages=[{"role": "user", "content": text}], **kw)


def ask(ref: ActorRef, request: Any, timeout: float = 120) -> Any:
    return ref.ask(request, timeout=timeout).get()


def test_answers_a_simple_question(model: ActorRef) -> None:
    done = ask(model, chat("What is the capital of France?", max_new_tokens=16))
    assert isinstance(done, Completion)
    assert "Paris" in done.text
    assert done.prompt_tokens > 5 and 0 < done.completion_tokens <= 16
    assert done.finish_reason in ("stop", "length")


def test_batched_equals_alone_under_greedy(loaded: Any) -> None:
    alone = ModelActor.start(max_batch_size=1, name="alone")
    batched = ModelActor.start(max_batch_size=8, name="batched")
    batched.ask(Pause(), timeout=30).get()  # queue all 8, then cut one batch
    replies = [batched.ask(chat(p, max_new_tokens=12), timeout=120) for p in PROMPTS]
    batched.ask(Resume(), timeout=30).get()
    together = [r.get() for r in replies]
    assert {c.batch_size for c in together} == {8}
    for prompt, joint in zip(PROMPTS, together, strict=True):
        solo = ask(alone, chat(prompt, max_new_tokens=12))
        assert solo.batch_size == 1
        assert joint.text == solo.text, prompt
    # What the metrics and the views read: completed requests by batch size, and their waits.
    shape = ask(batched, GetModelStats())
    assert shape.batch_sizes == {8: len(PROMPTS)} and shape.queue_seconds > 0
    assert ask(alone, GetModelStats()).batch_sizes == {1: len(PROMPTS)}


async def test_streaming_chunks_concatenate_to_final_text(model: ActorRef) -> None:
    async with ModelStream(model, chat("Name three fruits.", max_new_tokens=20)) as stream:
        chunks = [chunk async for chunk in stream]
    assert stream.completion is not None
    assert len(chunks) > 1
    assert "".join(chunks) == stream.completion.text


async def test_stalled_stream_raises_typed_timeout(model: ActorRef) -> None:
    model.ask(Pause(), timeout=30).get()  # the request waits: no chunk ever comes
    with pytest.raises(StreamStalled):
        async with ModelStream(model, chat("Hi", max_new_tokens=4), chunk_timeout=0.3) as s:
            async for _ in s:
                pass
    model.ask(Resume(), timeout=30).get()


def test_over_long_prompt_is_refused_with_lengths(model: ActorRef) -> None:
    long_text = "word " * 10_000
    with pytest.raises(ModelError, match=r"\d+.*\d+") as info:
        ask(model, chat(long_text, max_new_tokens=8))
    assert "context" in str(info.value)
    # With truncation asked for, the oldest turns are dropped until it fits.
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "filler " * 9000},  # alone longer than the window
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    with pytest.raises(ModelError, match="context"):
        ask(model, Generate(messages=turns, max_new_tokens=8))
    done = ask(model, Generate(messages=turns, max_new_tokens=8, truncate=True))
    assert done.prompt_tokens < 100  # the old filler turn was dropped, the question kept
    assert "Paris" in done.text


def test_malformed_request_then_good_one(model: ActorRef) -> None:
    for bad in (
        Generate(),  # neither messages nor prompt
        Generate(prompt="x", temperature=-1.0),
        Generate(messages=[{"role": "wizard", "content": "hi"}]),
        Generate(prompt="x", max_new_tokens=0),
    ):
        with pytest.raises(ModelError):
            ask(model, bad)
    assert ask(model, chat("Say yes.", max_new_tokens=4)).completion_tokens > 0
    stats = ask(model, GetModelStats())
    assert isinstance(stats, ModelStats) and stats.refused == 4 and stats.completed == 1


@pytest.mark.parametrize(("schedule", "expected_batch"), [("round_robin", 1), ("fifo", 4)])
def test_round_robin_serves_the_quiet_requester(
    loaded: Any, schedule: str, expected_batch: int
) -> None:
    ref = ModelActor.start(max_batch_size=2, schedule=schedule)
    ref.ask(Pause(), timeout=30).get()
    flood = [
        ref.ask(chat(f"Flood {i}", max_new_tokens=2, requester="flooder"), timeout=120)
        for i in range(7)
    ]
    quiet = ref.ask(chat("Quiet one", max_new_tokens=2, requester="quiet"), timeout=120)
    ref.ask(Resume(), timeout=30).get()
    assert quiet.get().batch == expected_batch
    assert max(r.get().batch for r in flood) == 4


def test_token_budget_refuses_over_budget_requester(loaded: Any) -> None:
    ref = ModelActor.start(budgets={"thrifty": 10})
    assert ask(ref, chat("Hi", max_new_tokens=6, requester="thrifty")).completion_tokens <= 6
    with pytest.raises(BudgetExceeded, match="thrifty"):
        ask(ref, chat("Hi again", max_new_tokens=10, requester="thrifty"))
    assert ask(ref, chat("Hi", max_new_tokens=4, requester="someone-else")).text


def test_a_batch_is_traced_with_genai_spans(loaded: Any) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from llmos.actors import tracing

    exporter = InMemorySpanExporter()
    tracing.enable(exporter)
    try:
        ref = ModelActor.start(name="traced")
        ref.ask(Pause(), timeout=30).get()  # queue both, then run them as one batch
        replies = [
            ref.ask(chat(p, max_new_tokens=6, requester=who), timeout=120)
            for p, who in ((PROMPTS[0], "ann"), (PROMPTS[1], "bob"))
        ]
        ref.ask(Resume(), timeout=30).get()
        done = [r.get() for r in replies]
    finally:
        tracing.disable()
    spans = [s for s in exporter.get_finished_spans() if s.name == f"chat {done[0].model}"]
    assert len(spans) == 2
    handled = {s.context.span_id: s for s in exporter.get_finished_spans()}
    for span in spans:
        attrs = dict(span.attributes or {})
        completion = next(c for c in done if c.request_id == attrs["gen_ai.response.id"])
        assert attrs["gen_ai.request.model"] == completion.model
        assert attrs["gen_ai.usage.input_tokens"] == completion.prompt_tokens
        assert attrs["gen_ai.usage.output_tokens"] == completion.completion_tokens
        assert attrs["gen_ai.response.finish_reasons"] == (completion.finish_reason,)
        assert attrs["llmos.model.batch_size"] == 2 and attrs["gen_ai.request.max_tokens"] == 6
        assert attrs["llmos.model.queue_seconds"] == completion.queue_seconds > 0
        assert span.parent is not None
        assert handled[span.parent.span_id].name == "handle llmos.model.Generate"


def test_the_ledger_counts_the_real_tokens_beside_the_budgets(loaded: Any) -> None:
    ref = ModelActor.start(budgets={"thrifty": 10})
    done = ask(ref, chat("Hi", max_new_tokens=6, requester="thrifty", dialogue="d1"))
    ledger = ask(ref, GetLedger())
    usage = ledger.agents["thrifty"]
    assert (usage.input_tokens, usage.output_tokens, usage.requests, usage.budget) == (
        done.prompt_tokens,
        done.completion_tokens,
        1,
        10,
    )
    assert usage.input_tokens > 5 and usage.remaining == 10 - done.completion_tokens
    assert (
        ledger.dialogues["d1"]
        == ledger.models[done.model]
        == dataclasses.replace(usage, budget=None)
    )
    assert kernel().stats().tokens.agents["thrifty"] == usage


def test_request_past_its_timeout_is_dropped(model: ActorRef) -> None:
    from llmos.actors import AskTimeout

    model.ask(Pause(), timeout=30).get()
    stale = model.ask(chat("Too late", max_new_tokens=4), timeout=0.2)
    with pytest.raises(AskTimeout):
        stale.get()
    model.ask(Resume(), timeout=30).get()
    assert ask(model, chat("On time", max_new_tokens=4)).text
    stats = ask(model, GetModelStats())
    assert stats.completed == 1 and stats.refused == 1


def test_pool_of_two_replicas_serves_concurrent_agents(loaded: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from llmos.kernel import kernel

    pool = kernel().spawn_pool(ModelActor, size=2, router="least_loaded", name="models")
    members = pool.members()
    for m in members:  # hold both replicas so the asks queue and spread by load
        m.ask(Pause(), timeout=30).get()

    def agent(i: int) -> Completion:
        reply = pool.ask(
            chat(f"Say the number {i}.", max_new_tokens=4, requester=f"a{i}"), timeout=300
        )
        result: Completion = reply.get()
        return result

    with ThreadPoolExecutor(6) as workers:
        futures = [workers.submit(agent, i) for i in range(6)]
        queued, deadline = 0, time.monotonic() + 60
        while queued < 6:  # wait (bounded) until all 6 asks sit in the replicas' queues
            assert time.monotonic() < deadline, f"only {queued} of 6 asks reached the pool"
            queued = sum(ask(m, GetModelStats(), timeout=30).queued for m in members)
        for m in members:
            m.ask(Resume(), timeout=30).get()
        answers = [f.result(timeout=300) for f in futures]
    assert all(a.completion_tokens > 0 for a in answers)
    served = [ask(m, GetModelStats()).completed for m in members]
    assert sorted(served) == [3, 3]  # least_loaded spread the six agents evenly


def test_out_of_memory_fails_the_batch_and_the_kernel_restarts_the_model(
    loaded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmos.kernel import kernel
    from llmos.models import BatchSession, ModelOutOfMemory

    real = BatchSession.step
    calls = {"n": 0}

    def flaky(self: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ModelOutOfMemory("CUDA out of memory (simulated)")
        return real(self)

    monkeypatch.setattr(BatchSession, "step", flaky)
    ref = kernel().spawn(ModelActor, name="oom-model")
    with pytest.raises(ModelOutOfMemory):
        ask(ref, chat("First", max_new_tokens=4))
    # The kernel restarted the actor behind the same ref; the next request is served.
    done = ask(ref, chat("Second", max_new_tokens=4))
    assert done.completion_tokens > 0
    assert ref.statistics().restarts == 1
