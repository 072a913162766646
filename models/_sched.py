"""Scheduling of model requests across requesters: FIFO or round-robin, with token budgets;
what is checked of a request on arrival (the prompt's byte cap, its engine parameters).

A plain class, no threads: the model actor owns one and calls it from its own thread.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Literal

from ._engine_params import GenerateParams
from ._errors import ModelError

__all__ = [
    "BudgetExceeded",
    "Pending",
    "Policy",
    "PromptTooLarge",
    "Scheduler",
    "check_prompt_size",
    "check_tokenize",
    "request_params",
]

Policy = Literal["fifo", "round_robin"]


class BudgetExceeded(ModelError):
    """Raised when a requester asks for more tokens than its budget has left.

    The request was not queued. Wait for the budget to be raised (``set_budget``), or ask for
    fewer ``max_new_tokens``.
    """


class PromptTooLarge(ModelError):
    """Raised when a request's prompt text is over the model actor's byte cap.

    The request was refused on arrival, before any tokenizing, so it held up nobody. Unlike a
    prompt refused for the context window (a plain :class:`ModelError`, found by tokenizing),
    this one is far too long to be worth tokenizing at all.
    """


def check_prompt_size(request: Any, cap: int | None) -> None:
    """Refuse a Generate whose prompt text is over ``cap`` UTF-8 bytes, without tokenizing.

    Raises:
        PromptTooLarge: it is over the cap.
    """
    if cap is None:
        return
    texts: list[Any] = [request.prompt]
    if isinstance(request.messages, list | tuple):
        texts += [m.get("content") for m in request.messages if isinstance(m, dict)]
    size = 0
    for text in texts:
        if isinstance(text, str):
            # A str has at least as many UTF-8 bytes as characters: a text over the cap by its
            # length alone is not encoded at all.
            size += len(text) if len(text) > cap else len(text.encode("utf-8", "replace"))
        if size > cap:
            raise PromptTooLarge(
                f"the prompt is over {size:,} bytes, more than this model actor's cap of "
                f"{cap:,} (max_prompt_bytes); it was refused before tokenizing. Shorten the "
                "prompt, or start the model actor with a larger max_prompt_bytes"
            )


def check_tokenize(request: Any, cap: int | None) -> list[str]:
    """The texts of a Tokenize request, checked: a list of at most 16 str, within ``cap``
    UTF-8 bytes together (None: no cap).

    Raises:
        ModelError: not a list of str, or too many.
        PromptTooLarge: over the cap.
    """
    texts = request.texts
    if isinstance(texts, str) or not isinstance(texts, list | tuple) or len(texts) > 16:
        raise ModelError(f"Tokenize.texts must be a list of at most 16 str, got {texts!r:.200}")
    if not all(isinstance(t, str) for t in texts):
        raise ModelError("Tokenize.texts must hold only str")
    size = sum(len(t.encode("utf-8", "replace")) for t in texts)
    if cap is not None and size > cap:
        raise PromptTooLarge(
            f"the texts to tokenize are {size:,} bytes, more than this model actor's cap of "
            f"{cap:,} (max_prompt_bytes)"
        )
    return list(texts)


def request_params(request: Any, max_new_tokens_cap: int) -> GenerateParams:
    """The engine's parameters for a :class:`~llmos.models.Generate` (its ``max_new_tokens``
    held to ``max_new_tokens_cap``); checked when built.

    Raises:
        ModelError: a malformed request (the message says which field).
    """
    max_new = request.max_new_tokens
    if isinstance(max_new, int) and not isinstance(max_new, bool):
        max_new = min(max_new, max_new_tokens_cap)
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
        json_schema=request.json_schema,
        tools=getattr(request, "tools", None),
    )


@dataclasses.dataclass(eq=False)
class Pending:
    """A request from its arrival until it is answered (waiting, then in the running batch).

    Attributes:
        sent_at: when the requester sent it (the ask's start), for a true ``queue_seconds``.
        started_at: when it joined the running batch (None while waiting).
        batch: the number of the group it joined the running batch with.
        peak: the most requests that ran together while it ran.
        cancel: why it is being cancelled ("" while wanted).
        error: the error it is to fail with once it leaves the batch (a failed stream target).
        settled: its token reservation was settled (exactly once, on every path).
        span: its GenAI trace span while tracing is on (ended when it is answered or fails).
        prompt_tokens: the prompt tokens fed to the model, and
        completion_tokens: the tokens generated, for a request that left the batch with an
            error instead of a result (both 0 until then, and when it never reached the
            model): what the ledger and its budget are charged.
    """

    request: Any
    params: Any
    reply: Any
    requester: str
    request_id: str
    queued_at: float
    max_new_tokens: int
    sent_at: float = 0.0
    started_at: float | None = None
    batch: int = 0
    peak: int = 0
    chunks: int = 0
    cancel: str = ""
    error: ModelError | None = None
    settled: bool = False
    span: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Scheduler:
    """Orders waiting requests and enforces per-requester token budgets.

    Args:
        policy: "fifo" serves requests in arrival order; "round_robin" takes one request per
            requester in turn, so one requester flooding the model cannot starve the others.
        budgets: completion-token budgets per requester name.
        default_budget: the budget of any requester not in ``budgets`` (None: unlimited).
    """

    def __init__(
        self,
        policy: Policy = "fifo",
        budgets: dict[str, int] | None = None,
        default_budget: int | None = None,
    ) -> None:
        if policy not in ("fifo", "round_robin"):
            raise ModelError(f"schedule must be 'fifo' or 'round_robin', got {policy!r}")
        self.policy = policy
        self.budgets = dict(budgets or {})
        self.default_budget = default_budget
        self.used: collections.Counter[str] = collections.Counter()
        self.reserved: collections.Counter[str] = collections.Counter()
        self._fifo: collections.deque[Pending] = collections.deque()
        self._queues: dict[str, collections.deque[Pending]] = {}
        self._ring: collections.deque[str] = collections.deque()

    def __len__(self) -> int:
        if self.policy == "fifo":
            return len(self._fifo)
        return sum(len(q) for q in self._queues.values())

    def set_budget(self, requester: str, tokens: int | None) -> None:
        """Set (or with None remove) one requester's budget."""
        if tokens is None:
            self.budgets.pop(requester, None)
        else:
            self.budgets[requester] = tokens

    def admit(self, requester: str, max_new_tokens: int) -> None:
        """Reserve ``max_new_tokens`` of the requester's budget.

        Raises:
            BudgetExceeded: the reservation does not fit what is left.
        """
        budget = self.budgets.get(requester, self.default_budget)
        if budget is None:
            self.reserved[requester] += max_new_tokens
            return
        spent = self.used[requester] + self.reserved[requester]
        if spent + max_new_tokens > budget:
            raise BudgetExceeded(
                f"requester {requester!r} is over its token budget: {self.used[requester]} used "
                f"+ {self.reserved[requester]} reserved + {max_new_tokens} asked > {budget}; "
                "ask for fewer max_new_tokens or raise the budget"
            )
        self.reserved[requester] += max_new_tokens

    def settle(self, pending: Pending, tokens: int) -> None:
        """Release a request's reservation and charge what it really generated (once)."""
        if pending.settled:
            return
        pending.settled = True
        self.reserved[pending.requester] -= pending.max_new_tokens
        self.used[pending.requester] += tokens

    def push(self, pending: Pending) -> None:
        if self.policy == "fifo":
            self._fifo.append(pending)
            return
        queue = self._queues.get(pending.requester)
        if queue is None:
            queue = self._queues[pending.requester] = collections.deque()
        if not queue:
            self._ring.append(pending.requester)
        queue.append(pending)

    def take(self, n: int) -> list[Pending]:
        """Take up to ``n`` requests for the next batch, in policy order."""
        batch: list[Pending] = []
        if self.policy == "fifo":
            while self._fifo and len(batch) < n:
                batch.append(self._fifo.popleft())
            return batch
        while self._ring and len(batch) < n:
            requester = self._ring.popleft()
            queue = self._queues[requester]
            batch.append(queue.popleft())
            if queue:
                self._ring.append(requester)  # back of the line: the others go first
        return batch

    def drain(self) -> list[Pending]:
        """Take every waiting request (used when the actor stops)."""
        return self.take(len(self))
