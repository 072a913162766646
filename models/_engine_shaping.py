"""Repetition control for one request: a repetition penalty and a ban on repeated n-grams.

Small models loop: they copy the previous turn, or say the same phrase twice in one answer.
:class:`RepetitionControl` reshapes a request's next-token logits before the token is chosen
(greedy or sampled): tokens already seen (in the completion so far, or in the texts the request
asks to avoid, such as the dialogue's earlier turns) are penalized, and a token that would
complete an n-gram already seen is banned outright.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["RepetitionControl"]


class RepetitionControl:
    """Shapes one request's logits so that it does not repeat itself or the texts to avoid.

    Args:
        penalty: divides the positive logits (multiplies the negative ones) of tokens seen
            before; 1.0 turns it off.
        ngram: a token that would repeat an n-gram of this many tokens is banned; 0 turns
            it off.
        avoid: token sequences not to repeat (each on its own: an n-gram never spans two).
    """

    def __init__(self, penalty: float, ngram: int, avoid: Sequence[Sequence[int]]) -> None:
        self.penalty = penalty
        self.ngram = ngram
        self.generated: list[int] = []
        self._seen: set[int] = set()
        self._next: dict[tuple[int, ...], set[int]] = {}
        for seq in avoid:
            self._seen.update(seq)
            for i in range(len(seq) - ngram + 1 if ngram else 0):
                self._index(tuple(seq[i : i + ngram - 1]), seq[i + ngram - 1])

    def _index(self, prefix: tuple[int, ...], token: int) -> None:
        self._next.setdefault(prefix, set()).add(token)

    def push(self, token: int) -> None:
        """Record the token the request generated."""
        self.generated.append(token)
        self._seen.add(token)
        n = self.ngram
        if n and len(self.generated) >= n:
            self._index(tuple(self.generated[-n:-1]), token)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Return the reshaped copy of a 1-D logits row."""
        out = logits.clone()
        if self.penalty != 1.0 and self._seen:
            index = torch.tensor(sorted(self._seen), device=out.device)
            picked = out[index]
            out[index] = torch.where(picked > 0, picked / self.penalty, picked * self.penalty)
        n = self.ngram
        if n and len(self.generated) >= n - 1:
            banned = self._next.get(tuple(self.generated[len(self.generated) - n + 1 :]))
            if banned:
                out[torch.tensor(sorted(banned), device=out.device)] = float("-inf")
        return out
