"""Scheduling of model requests across requesters: FIFO or round-robin, with token budgets.

A plain class, no threads: the model actor owns one and calls it from its own thread.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Literal

from ._errors import ModelError

__all__ = ["BudgetExceeded", "Pending", "Policy", "Scheduler"]

Policy = Literal["fifo", "round_robin"]


class BudgetExceeded(ModelError):
    """Raised when a requester asks for more tokens than its budget has left.

    The request was not queued. Wait for the budget to be raised (``set_budget``), or ask for
    fewer ``max_new_tokens``.
    """


@dataclasses.dataclass(eq=False)
class Pending:
    """A request waiting for a batch."""

    request: Any
    params: Any
    reply: Any
    requester: str
    request_id: str
    queued_at: float
    max_new_tokens: int


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
        """Release a request's reservation and charge what it really generated."""
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
