"""The token ledger: tokens in and out per agent, per dialogue and per model, with budgets.

A model actor keeps a :class:`TokenLedger` and charges it once per request served (answered,
cancelled, or failed after it reached the model, with what it had spent; and each scoring); asked
``GetLedger`` (in :mod:`llmos.models`) it answers the :class:`Ledger` snapshot, and
``kernel().stats().tokens`` merges the ledgers of every model actor running in the process. A
dialogue keeps one too, charged from its utterances, and saves it with its transcript.

The snapshot is plain message data, so it reads the same locally and from another node.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from llmos.actors import message, message_fields

__all__ = ["Ledger", "LedgerKind", "TokenLedger", "TokenUsage", "live_ledgers", "merge_ledgers"]

LedgerKind = Literal["agents", "dialogues", "models"]
_KINDS: tuple[LedgerKind, ...] = ("agents", "dialogues", "models")


@message("llmos.kernel.TokenUsage")
class TokenUsage:
    """What one agent, dialogue or model spent.

    Attributes:
        input_tokens: prompt tokens of its requests, and the tokens its scorings read.
        output_tokens: tokens generated for them (none for a scoring).
        requests: requests served: answered, cancelled, failed after they reached the model
            (charged what they had spent), and scorings; refused ones are not counted.
        budget: its token budget beside the figures (None: none set). For an agent this is
            the model actor's completion-token budget for that requester, the one it enforces
            on admission; compare it with ``output_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    budget: int | None = None

    @property
    def total_tokens(self) -> int:
        """input_tokens + output_tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def remaining(self) -> int | None:
        """Output tokens left in the budget (never below 0); None without a budget."""
        return None if self.budget is None else max(self.budget - self.output_tokens, 0)


@message("llmos.kernel.Ledger")
class Ledger:
    """A snapshot of token use, by agent (the requester), by dialogue and by model.

    Attributes:
        agents: usage per requester name (``Generate.requester``, ``Score.requester``;
            "anonymous" when unnamed).
        dialogues: usage per dialogue name (``Generate.dialogue``, ``Score.dialogue``;
            requests outside any dialogue are not in this table).
        models: usage per model name.
    """

    agents: dict[str, TokenUsage]
    dialogues: dict[str, TokenUsage]
    models: dict[str, TokenUsage]

    @property
    def input_tokens(self) -> int:
        """Prompt tokens over all models."""
        return sum(u.input_tokens for u in self.models.values())

    @property
    def output_tokens(self) -> int:
        """Generated tokens over all models."""
        return sum(u.output_tokens for u in self.models.values())

    def as_dict(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Plain nested dicts (JSON-ready): ``{"agents": {name: {"input_tokens": ...}}, ...}``."""
        return {
            kind: {name: message_fields(u) for name, u in getattr(self, kind).items()}
            for kind in _KINDS
        }


def _add(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    budget = None if a.budget is None or b.budget is None else a.budget + b.budget
    return TokenUsage(
        a.input_tokens + b.input_tokens,
        a.output_tokens + b.output_tokens,
        a.requests + b.requests,
        budget,
    )


def merge_ledgers(ledgers: Iterable[Ledger]) -> Ledger:
    """Sum snapshots (say, of several model actors); budgets add up where all have one."""
    tables: dict[str, dict[str, TokenUsage]] = {kind: {} for kind in _KINDS}
    for ledger in ledgers:
        for kind in _KINDS:
            table = tables[kind]
            for name, usage in getattr(ledger, kind).items():
                table[name] = _add(table[name], usage) if name in table else usage
    return Ledger(tables["agents"], tables["dialogues"], tables["models"])


class TokenLedger:
    """The running counts behind a :class:`Ledger`; thread-safe (charged in the owner's
    thread, read from any).

    Args:
        budgets: budgets per agent name, shown beside the agents' usage (read when a snapshot
            is taken: pass the dict the owner updates, and the snapshot follows it).
        default_budget: the budget of agents not in ``budgets`` (None: unlimited).
        register: list it in :func:`live_ledgers` (so ``kernel().stats()`` includes it) until
            :meth:`close`.
    """

    def __init__(
        self,
        budgets: Mapping[str, int] | None = None,
        default_budget: int | None = None,
        *,
        register: bool = False,
    ) -> None:
        self.budgets: Mapping[str, int] = budgets if budgets is not None else {}
        self.default_budget = default_budget
        self._lock = threading.Lock()
        # kind -> name -> [input, output, requests]
        self._tables: dict[str, dict[str, list[int]]] = {kind: {} for kind in _KINDS}
        if register:
            with _registry_lock:
                _registry.add(self)

    def charge(
        self, agent: str, dialogue: str, model: str, input_tokens: int, output_tokens: int
    ) -> None:
        """Count one request served (an empty ``dialogue`` counts it outside any)."""
        with self._lock:
            for kind, name in (("agents", agent or "anonymous"), ("dialogues", dialogue)):
                if kind == "dialogues" and not name:
                    continue
                self._bump(kind, name, input_tokens, output_tokens)
            self._bump("models", model, input_tokens, output_tokens)

    def _bump(self, kind: str, name: str, input_tokens: int, output_tokens: int) -> None:
        row = self._tables[kind].get(name)
        if row is None:
            row = self._tables[kind][name] = [0, 0, 0]
        row[0] += input_tokens
        row[1] += output_tokens
        row[2] += 1

    def snapshot(self) -> Ledger:
        """The counts now, with each agent's budget beside its usage."""
        budgets = dict(self.budgets)
        with self._lock:
            tables = {kind: {n: list(r) for n, r in t.items()} for kind, t in self._tables.items()}
        agents = {
            name: TokenUsage(i, o, n, budgets.get(name, self.default_budget))
            for name, (i, o, n) in tables["agents"].items()
        }
        for name, budget in budgets.items():  # a budget with nothing spent yet still shows
            agents.setdefault(name, TokenUsage(0, 0, 0, budget))
        return Ledger(
            agents,
            {name: TokenUsage(i, o, n) for name, (i, o, n) in tables["dialogues"].items()},
            {name: TokenUsage(i, o, n) for name, (i, o, n) in tables["models"].items()},
        )

    def close(self) -> None:
        """Leave :func:`live_ledgers` (the owner stopped for good); the counts stay readable."""
        with _registry_lock:
            _registry.discard(self)


_registry: weakref.WeakSet[TokenLedger] = weakref.WeakSet()
_registry_lock = threading.Lock()


def live_ledgers() -> list[TokenLedger]:
    """The registered ledgers of this process (the running model actors')."""
    with _registry_lock:
        return list(_registry)
