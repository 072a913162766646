"""Memory: the turns a ChatAgent remembers, within a token budget: what it hears in a
dialogue, and what it drops or folds into a running summary when the turns outgrow it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from llmos.agents._errors import AgentError

__all__ = ["Memory", "Summarizer", "approx_tokens"]

Summarizer = Callable[[list[dict[str, str]], str], str]
"""``(dropped_turns, previous_summary) -> summary``: how overflowing turns are folded."""


def approx_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token) for memory budgets."""
    return (len(text) + 3) // 4


class Memory:
    """The turns a ChatAgent remembers, within a token budget.

    Args:
        budget: the most tokens the summary and the turns may take together.
        count: how tokens are counted (default :func:`approx_tokens`).

    Attributes:
        turns: ``{"role": "user"|"assistant", "content": str}`` dicts, oldest first.
        summary: what the dropped turns were about ("" when they were simply dropped).
        seen: per dialogue, the highest transcript index absorbed, so a retried turn does not
            add the same utterances twice.
        dropped: how many turns were dropped or summarised so far.
    """

    def __init__(self, budget: int, count: Callable[[str], int] = approx_tokens) -> None:
        if not isinstance(budget, int) or budget < 16:
            raise AgentError(f"a memory budget must be an int >= 16 tokens, got {budget!r}")
        self.budget = budget
        self.count = count
        self.turns: list[dict[str, str]] = []
        self.summary = ""
        self.seen: dict[str, int] = {}
        self.dropped = 0

    def tokens(self) -> int:
        """Tokens taken by the summary and the turns."""
        return self.count(self.summary) + sum(self.count(t["content"]) for t in self.turns)

    def add(self, role: str, content: str) -> None:
        """Remember one turn (consecutive turns of the same role are merged)."""
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1] = {"role": role, "content": self.turns[-1]["content"] + "\n" + content}
        else:
            self.turns.append({"role": role, "content": content})

    def hear(self, dialogue: str, new: Sequence[dict[str, Any]], me: str) -> list[dict[str, Any]]:
        """Remember what was said in ``dialogue`` since ``me`` last spoke.

        The others' words become user turns (``"name: text"``), ``me``'s own assistant turns;
        entries a retried turn already brought (by transcript index) are skipped.

        Args:
            dialogue: the dialogue's name.
            new: the transcript entries (``index``, ``speaker``, ``text``), oldest first.
            me: the name of the agent remembering.

        Returns:
            The others' entries newly remembered, oldest first.
        """
        incoming: list[dict[str, Any]] = []
        for entry in new:
            if entry["index"] <= self.seen.get(dialogue, -1):
                continue  # a retried turn: already remembered
            self.seen[dialogue] = entry["index"]
            if entry["speaker"] == me:
                self.add("assistant", entry["text"])
            else:
                self.add("user", f"{entry['speaker']}: {entry['text']}")
                incoming.append(entry)
        return incoming

    def fit(self, summarize: Summarizer | None) -> None:
        """Come back within budget: drop the oldest turns, or (with ``summarize``) fold them
        into the summary, cut to an eighth of the budget in words."""
        dropped = self.overflow()
        if not dropped or summarize is None:
            return
        words = str(summarize(dropped, self.summary)).split()
        limit = max(8, self.budget // 8)  # a summary never crowds out the turns
        self.summary = " ".join(words[:limit])
        self.overflow()

    def overflow(self) -> list[dict[str, str]]:
        """Remove the oldest turns until within budget (the newest always stays); return them."""
        removed: list[dict[str, str]] = []
        while len(self.turns) > 1 and self.tokens() > self.budget:
            removed.append(self.turns.pop(0))
        self.dropped += len(removed)
        return removed

    def clear(self) -> None:
        """Forget everything."""
        self.turns, self.summary, self.seen = [], "", {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "turns": [dict(t) for t in self.turns],
            "tokens": self.tokens(),
        }
