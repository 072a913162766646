"""The model actor under faults, on the real default model: cancellation, failing stream
targets, token reservations, the prompt byte cap, true queue times and continuous batching."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ClassVar

import pytest
from test_model_actor import chat

from llmos.actors import (
    Actor,
    ActorDeadError,
    ActorRef,
    AskTimeout,
    MailboxFull,
    Reply,
    WhenFull,
    handler,
)
from llmos.kernel import Supervisor, kernel
from llmos.models import (
    Cancel,
    Completion,
    Generate,
    GenerateParams,
    GenerateResult,
    GetLedger,
    GetModelStats,
    ModelActor,
    ModelEngine,
    ModelError,
    ModelStream,
    Pause,
    PromptTooLarge,
    Resume,
    TokenChunk,
    shared_model,
)
from llmos.models._sched import Pending
from llmos.models._serve import RunningBatch

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine() -> ModelEngine:
    return ModelEngine(shared_model())


# -- the running batch: cancellation takes effect at the next step ------------------------------


class Target:
    """A stream target that fails on chunk ``fail_at`` with ``error``."""

    def __init__(self, fail_at: int = -1, error: Exception | None = None) -> None:
        self.chunks: list[Any] = []
        self.fail_at = fail_at
        self.error = error

    def tell(self, msg: Any) -> None:
        if isinstance(msg, TokenChunk) and msg.index == self.fail_at and self.error is not None:
            raise self.error
        self.chunks.append(msg)


def pending(text: str, tokens: int, target: Any = None, reply: Any = None) -> Pending:
    request = chat(text, max_new_tokens=tokens, stream_to=target)
    params = GenerateParams(messages=request.messages, max_new_tokens=tokens)
    return Pending(request, params, reply, "r", f"id-{text}", time.monotonic(), tokens)


def run(batch: RunningBatch) -> dict[str, GenerateResult | ModelError]:
    results: dict[str, GenerateResult | ModelError] = {}
    while batch.busy:
        results.update((p.request_id, r) for p, r in batch.step())
    return results


def steps(batch: RunningBatch, n: int) -> None:
    for _ in range(n):
        assert batch.step() == []


@pytest.mark.parametrize("how", ["cancel", "ask timed out"])
def test_a_cancelled_request_leaves_at_the_next_step(engine: ModelEngine, how: str) -> None:
    reply = Reply(time.monotonic() + 60)
    batch = RunningBatch(engine, 4)
    batch.join([pending("Count to fifty.", 60, reply=reply), pending("Name a fruit.", 60)])
    steps(batch, 4)  # step 1 prefills and takes the first token: 4 tokens each
    if how == "cancel":
        assert batch.cancel("id-Count to fifty.", "cancelled")
    else:
        reply.expire()  # what a waiter does when its ask times out
    (p, result), *_ = batch.step()
    assert p.request_id == "id-Count to fifty."
    assert isinstance(result, GenerateResult) and result.finish_reason == "cancelled"
    assert result.completion_tokens == 4  # not one token after the cancel
    assert len(batch) == 1  # the other request goes on


def test_a_gone_stream_target_cancels_its_request_at_once(engine: ModelEngine) -> None:
    gone = Target(fail_at=2, error=ActorDeadError("gone"))
    batch = RunningBatch(engine, 4)
    batch.join([pending("Count to fifty.", 60, target=gone)])
    results = run(batch)
    result = results["id-Count to fifty."]
    assert isinstance(result, GenerateResult) and result.finish_reason == "cancelled"
    assert result.completion_tokens <= 4  # chunk 2 failed: no token after that step
    assert batch.steps <= 5


@pytest.mark.parametrize("error", [RuntimeError("boom"), MailboxFull("full")])
def test_a_failing_stream_target_fails_only_its_request(
    engine: ModelEngine, error: Exception
) -> None:
    alone = engine.generate(
        GenerateParams(messages=chat("Name a fruit.").messages, max_new_tokens=8)
    )
    batch = RunningBatch(engine, 4)
    bad, good = Target(fail_at=1, error=error), Target()
    batch.join([pending("Count to fifty.", 40, target=bad), pending("Name a fruit.", 8, good)])
    results = run(batch)
    failed = results["id-Count to fifty."]
    assert isinstance(failed, ModelError) and "stream target" in str(failed)
    assert failed.__cause__ is error
    ok = results["id-Name a fruit."]
    assert isinstance(ok, GenerateResult) and ok.text == alone.text
    assert "".join(c.text for c in good.chunks) == ok.text


# -- the actor --------------------------------------------------------------------------------


class Gated(Actor):
    """A stream target that blocks on its first message until released (its mailbox fills)."""

    actor_mailbox_capacity = 1
    actor_when_full: ClassVar[WhenFull] = "fail"

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    @handler(TokenChunk)
    def chunk(self, _msg: TokenChunk) -> None:
        self.gate.wait(60)

    @handler(Completion)
    def done(self, _msg: Completion) -> None:
        pass


def ask(ref: ActorRef, request: Any, timeout: float = 120) -> Any:
    return ref.ask(request, timeout=timeout).get()


def test_leaving_a_stream_stops_its_generation(caplog: pytest.LogCaptureFixture) -> None:
    model = ModelActor.start(name="model")
    caplog.set_level(logging.DEBUG, logger="llmos")

    async def read_three() -> None:
        request = chat("Tell me a long story.", max_new_tokens=200, requester="reader")
        async with ModelStream(model, request) as stream:
            async for _ in stream:
                if len(stream.chunks) == 3:
                    break

    import asyncio

    asyncio.run(read_three())
    after = ask(model, chat("Say yes.", max_new_tokens=4, requester="next"))
    assert after.completion_tokens > 0
    used = ask(model, GetModelStats()).tokens_by_requester
    assert used["reader"] < 100  # stopped long before its 200 tokens
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_ask_that_times_out_leaves_the_batch() -> None:
    model = ModelActor.start(name="model")
    assert ask(model, chat("Say yes.", max_new_tokens=4)).completion_tokens > 0  # loaded
    stale = model.ask(chat("Count to five hundred.", max_new_tokens=500, requester="slow"), 0.5)
    with pytest.raises(AskTimeout):
        stale.get()
    assert ask(model, chat("Say yes.", max_new_tokens=4)).completion_tokens > 0
    assert ask(model, GetModelStats()).tokens_by_requester["slow"] < 500


def test_an_ask_dropped_at_its_deadline_is_told_it_timed_out_not_given_a_value() -> None:
    """Nobody waits on the reply: the model settles it itself when it drops the request at the
    next step after its deadline. That is a timeout, never a "cancelled" completion."""
    model = ModelActor.start(name="model")
    assert ask(model, chat("Say yes.", max_new_tokens=4)).completion_tokens > 0  # loaded
    stale = model.ask(chat("Count to five hundred.", max_new_tokens=500, requester="slow"), 0.5)
    settled = threading.Event()
    stale.add_done_callback(lambda _reply: settled.set())
    assert settled.wait(60)
    assert isinstance(stale.exception(), AskTimeout)
    assert 0 < ask(model, GetModelStats()).tokens_by_requester["slow"] < 500


def test_a_failing_stream_target_fails_only_its_request_and_settles_its_budget() -> None:
    model = ModelActor.start(budgets={"r": 60}, name="model")
    gate = threading.Event()
    full = Gated.start(gate)
    try:
        bad = model.ask(chat("Count to fifty.", max_new_tokens=50, requester="r", stream_to=full))
        others = [model.ask(chat(f"Say {i}.", max_new_tokens=4), timeout=120) for i in range(6)]
        with pytest.raises(ModelError, match="stream target"):
            bad.get(timeout=120)
        assert all(r.get().completion_tokens > 0 for r in others)
    finally:
        gate.set()
    used = ask(model, GetModelStats()).tokens_by_requester["r"]
    assert used < 50
    # What it generated before it failed is charged, to the ledger and to the budget alike.
    spent = ask(model, GetLedger()).agents["r"]
    assert spent.requests == 1 and spent.output_tokens == used and spent.input_tokens > 5
    # The failed request's reservation of 50 was released: the rest of the budget is there.
    assert ask(model, chat("Hi", max_new_tokens=60 - used, requester="r")).text is not None


def test_every_path_settles_its_reservation() -> None:
    model = ModelActor.start(budgets={"r": 40}, name="model")
    model.ask(Pause(), timeout=30).get()
    expired = model.ask(chat("Late", max_new_tokens=10, requester="r"), timeout=0.2)
    with pytest.raises(AskTimeout):
        expired.get()
    cancelled = model.ask(chat("Never", max_new_tokens=10, requester="r", request_id="c1"))
    assert ask(model, Cancel("c1")) is True
    model.tell(chat("Told", max_new_tokens=10, requester="r"))  # nobody to answer: refused
    assert ask(model, GetModelStats()).refused == 1  # the tell (the expired ask: when taken)
    model.ask(Resume(), timeout=30).get()
    assert cancelled.get(timeout=120).finish_reason == "cancelled"
    assert ask(model, GetModelStats()).tokens_by_requester.get("r", 0) == 0
    assert ask(model, chat("All of it", max_new_tokens=40, requester="r")).text is not None


def test_an_oversized_prompt_is_refused_before_tokenizing() -> None:
    model = ModelActor.start(name="model")
    huge = "word " * 2_160_000  # 10.8 MB
    started = time.perf_counter()
    with pytest.raises(PromptTooLarge, match="max_prompt_bytes"):
        ask(model, chat(huge, max_new_tokens=4))
    refused = time.perf_counter() - started
    assert refused < 1.0, f"refused after {refused:.3f} s: it was tokenized"  # ~ms; see bench
    assert ask(model, chat("Say yes.", max_new_tokens=4)).completion_tokens > 0


def test_queue_seconds_counts_the_whole_wait() -> None:
    model = ModelActor.start(name="model")
    model.ask(Pause(), timeout=30).get()
    sent = time.monotonic()
    reply = model.ask(chat("Say yes.", max_new_tokens=4), timeout=120)
    time.sleep(0.3)  # the scenario: the request waits 0.3 s while the model is paused
    model.ask(Resume(), timeout=30).get()
    waited = time.monotonic() - sent
    done = reply.get()
    assert 0.3 <= done.queue_seconds <= waited + 1.0


def test_a_request_arriving_mid_batch_joins_the_running_batch() -> None:
    model = ModelActor.start(max_batch_size=8, name="model")
    first_chunk = threading.Event()

    class Watch(Actor):
        @handler(TokenChunk)
        def chunk(self, _msg: TokenChunk) -> None:
            first_chunk.set()

        @handler(Completion)
        def done(self, _msg: Completion) -> None:
            pass

    watch = Watch.start()
    long = model.ask(chat("Count to one hundred.", max_new_tokens=120, stream_to=watch), 300)
    assert first_chunk.wait(120)
    late = ask(model, chat("What is the capital of France?", max_new_tokens=8))
    assert not long.done()  # the late request finished while the long one still ran
    first = long.get()
    assert late.batch > first.batch  # joined the running batch as a later group
    assert late.batch_size == 2 and first.batch_size == 2
    alone = ask(
        ModelActor.start(name="alone"), chat("What is the capital of France?", max_new_tokens=8)
    )
    assert late.text == alone.text  # greedy: the same text as alone, whenever it joined


class Notify(Actor):
    """A stream target that sets ``first`` on the first token."""

    def __init__(self, first: threading.Event) -> None:
        super().__init__()
        self.first = first

    @handler(TokenChunk)
    def chunk(self, _msg: TokenChunk) -> None:
        self.first.set()

    @handler(Completion)
    def done(self, _msg: Completion) -> None:
        pass


class Asker(Actor):
    """Forwards a Generate to the model and waits for its answer, as a ChatAgent does."""

    def __init__(self, model: ActorRef) -> None:
        super().__init__()
        self.model = model

    @handler(Generate)
    def forward(self, request: Generate) -> None:
        self.model.ask(request, timeout=600).get()


def test_a_request_whose_asker_stopped_leaves_the_batch_at_the_next_step() -> None:
    model = ModelActor.start(name="model")
    sup = kernel().spawn(Supervisor, name="asker-sup", shutdown_timeout=0.2)
    asker = kernel().spawn(Asker, model, name="asker", supervisor=sup)
    first = threading.Event()
    sink = Notify.start(first)
    asker.tell(chat("Count to five hundred.", max_new_tokens=500, requester="gone", stream_to=sink))
    assert first.wait(120)  # generating
    sup.stop(timeout=30)  # the asker, blocked in its ask, is stopped after 0.2 s
    stopped = time.monotonic()
    assert asker.statistics().state == "stopped"
    after = ask(model, chat("Say yes.", max_new_tokens=4, requester="next"))
    assert after.completion_tokens > 0
    stats = ask(model, GetModelStats())
    assert stats.tokens_by_requester["gone"] < 100  # left long before its 500 tokens
    assert time.monotonic() - stopped < 30
    sink.stop(timeout=10)


def test_a_request_lost_to_a_failed_step_is_charged_what_it_spent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmos.models import BatchSession

    real = BatchSession.step
    calls = {"n": 0}

    def failing_third(self: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # after the prefill and two tokens
            raise ModelError("the forward pass failed (simulated)")
        return real(self)

    monkeypatch.setattr(BatchSession, "step", failing_third)
    ref = kernel().spawn(ModelActor, name="failing-model")
    request = chat("Count from one to ten.", max_new_tokens=20, requester="r", dialogue="d")
    with pytest.raises(ModelError, match="simulated"):
        ask(ref, request)
    # The kernel restarted the actor with its ledger: the lost request is in it.
    ledger = ask(ref, GetLedger())
    spent = ledger.agents["r"]
    assert (spent.output_tokens, spent.requests) == (2, 1) and spent.input_tokens > 5
    assert ledger.dialogues["d"] == spent
    assert ask(ref, GetModelStats()).tokens_by_requester["r"] == 2  # and its budget
