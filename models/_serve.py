"""The running batch of a model actor: requests join it, step, stream, and leave.

A plain class driven by the model actor's thread, one decoding step per call, so the actor
handles its mailbox between steps: a request that arrives mid-batch joins at the next step
(continuous batching), and a cancellation takes effect at the next step.
"""

from __future__ import annotations

import logging
import time

from llmos.actors import ActorDeadError

from ._engine import BatchSession, GenerateResult, ModelEngine
from ._errors import ModelError
from ._messages import Completion, TokenChunk
from ._sched import Pending

__all__ = ["RunningBatch", "completion_of"]

log = logging.getLogger("llmos.models")


class RunningBatch:
    """The requests generating together, over one :class:`BatchSession` at a time.

    Args:
        engine: the model engine.
        max_batch_size: the most requests in the batch at once.

    A request leaves the batch (``finish_reason`` "cancelled") at the next step once its ask
    has timed out or been answered, once the local actor that asked has stopped (see
    ``Reply.abandoned``), once its stream target is gone or failed, or once
    :meth:`cancel` named it. A stream target that fails with anything other than
    :class:`~llmos.actors.ActorDeadError` fails that request alone (its result is the error).
    """

    def __init__(self, engine: ModelEngine, max_batch_size: int) -> None:
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.rows: dict[int, Pending] = {}
        self.groups = 0  # groups that joined (the ``batch`` numbers)
        self.steps = 0
        self.row_steps = 0  # requests summed over steps: row_steps / steps = mean batch size
        self.session = self._new_session()

    def _new_session(self) -> BatchSession:
        return self.engine.session(self._on_token, self._should_cancel)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def free(self) -> int:
        """How many more requests may join now."""
        return max(self.max_batch_size - len(self.rows), 0)

    @property
    def busy(self) -> bool:
        """True while a step has work: requests running or results to hand out."""
        return self.session.has_results

    def join(self, pending: list[Pending]) -> None:
        """Add requests; they are prefilled together at the next step."""
        if not pending:
            return
        self.groups += 1
        now = time.monotonic()
        for p in pending:
            p.started_at, p.batch = now, self.groups
            self.rows[self.session.add(p.params)] = p

    def step(self) -> list[tuple[Pending, GenerateResult | ModelError]]:
        """Generate one token for every request; return the requests that finished.

        Raises:
            ModelError: the model failed (out of memory, a failed forward pass); the requests
                still in the batch are left in :attr:`rows` for the caller to fail.
        """
        size = len(self.rows)
        if size:
            self.steps += 1
            self.row_steps += size
            for p in self.rows.values():
                p.peak = max(p.peak, size)
        try:
            done = self.session.step()
        except BaseException:
            self._record_usage()  # the tokens the lost requests had spent
            self.session = self._new_session()  # the failed one lost its state
            raise
        finished: list[tuple[Pending, GenerateResult | ModelError]] = []
        for index, result in done:
            p = self.rows.pop(index)
            if p.error is not None and isinstance(result, GenerateResult):
                p.prompt_tokens, p.completion_tokens = (
                    result.prompt_tokens,
                    result.completion_tokens,
                )
            finished.append((p, p.error if p.error is not None else result))
        return finished

    def abandon(self) -> list[Pending]:
        """Take every request out of the batch (after a failed step, or when the actor stops),
        each with the tokens it had spent (``prompt_tokens``, ``completion_tokens``)."""
        self._record_usage()
        rows = list(self.rows.values())
        self.rows.clear()
        return rows

    def _record_usage(self) -> None:
        for index, p in self.rows.items():
            used = self.session.usage(index)
            if used is not None:
                p.prompt_tokens, p.completion_tokens = used

    def cancel(self, request_id: str, why: str) -> bool:
        """Mark the running request ``request_id`` to leave at the next step."""
        for p in self.rows.values():
            if p.request_id == request_id:
                p.cancel = p.cancel or why
                return True
        return False

    # -- called by the session, in this thread -------------------------------------------------

    def _on_token(self, index: int, text: str) -> None:
        p = self.rows[index]
        target = p.request.stream_to
        if target is None or p.cancel:
            return
        try:
            target.tell(TokenChunk(p.request_id, p.chunks, text))
        except ActorDeadError:
            p.cancel = "its stream target is gone"
            log.debug("stream target of %s is gone; the request is cancelled", p.request_id)
        except Exception as exc:  # whatever the target raised fails this request only
            p.cancel = "its stream target failed"
            p.error = ModelError(
                f"request {p.request_id}: its stream target {target!r} failed "
                f"({type(exc).__name__}: {exc}); the request was stopped, the others go on"
            )
            p.error.__cause__ = exc
        p.chunks += 1

    def _should_cancel(self, index: int) -> bool:
        p = self.rows[index]
        if not p.cancel and p.reply is not None:
            if p.reply.done() or p.reply.expired():
                p.cancel = "its ask timed out"
            elif p.reply.abandoned():
                p.cancel = "its asker stopped"
        return bool(p.cancel)


def completion_of(p: Pending, result: GenerateResult, model: str) -> Completion:
    """The answer to a request that finished in the batch: its result, how long it waited
    (from when it was sent) and the batch it ran in."""
    started = p.started_at if p.started_at is not None else time.monotonic()
    return Completion(
        text=result.text,
        finish_reason=result.finish_reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        queue_seconds=max(started - p.sent_at, 0.0),
        generation_seconds=result.generation_seconds,
        model=model,
        request_id=p.request_id,
        batch=p.batch,
        batch_size=max(p.peak, 1),
    )
