"""What a model actor counts: requests, refusals, completions, tokens, generation time, the
batch sizes its requests ran in and their time in the queue. A plain record the actor updates
from its own thread and carries over a restart; :meth:`Tally.stats` turns it into
:class:`~llmos.models.ModelStats`."""

from __future__ import annotations

import dataclasses
from typing import Any

from ._messages import ModelStats

__all__ = ["Tally"]


@dataclasses.dataclass
class Tally:
    """A model actor's counters (see the module docstring)."""

    requests: int = 0
    completed: int = 0
    refused: int = 0
    tokens: int = 0
    generation_seconds: float = 0.0
    batch_sizes: dict[int, int] = dataclasses.field(default_factory=dict)  # completed, by size
    queue_seconds: float = 0.0  # summed waits of completed requests

    def complete(self, tokens: int, batch_size: int, queued: float) -> None:
        """Count a completed request: its tokens, the batch it ran in, its wait."""
        self.completed += 1
        self.tokens += tokens
        self.batch_sizes[batch_size] = self.batch_sizes.get(batch_size, 0) + 1
        self.queue_seconds += queued

    def stats(self, model: str, running: Any, scheduler: Any) -> ModelStats:
        """The counters with the running batch's and the scheduler's figures."""
        steps = running.steps if running is not None else 0
        return ModelStats(
            model=model,
            requests=self.requests,
            completed=self.completed,
            refused=self.refused,
            batches=running.groups if running is not None else 0,
            mean_batch_size=running.row_steps / steps if steps else 0.0,
            tokens_generated=self.tokens,
            generation_seconds=self.generation_seconds,
            queued=len(scheduler),
            tokens_by_requester=dict(scheduler.used),
            batch_sizes=dict(self.batch_sizes),
            queue_seconds=self.queue_seconds,
        )
