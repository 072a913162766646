"""The token loop: a running batch that new requests can join at token boundaries.

Rows are left-padded into one batch with an attention mask and explicit position ids, so each
row computes what it would compute alone. Requests added while the batch runs are prefilled
together at the next step and merged in: the shorter KV cache is padded on the left (masked
out) so both line up. Finished rows leave the batch, and columns that became padding in every
row are cut from the cache, so the batch never attends over more than it must.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from ._engine_grammar import Constraint, Grammars
from ._engine_load import LoadedModel
from ._engine_params import FinishReason, GenerateParams, GenerateResult
from ._engine_shaping import RepetitionControl
from ._engine_text import TextStream, ends_sentence
from ._errors import ModelError

__all__ = ["BatchSession", "EngineParts"]


class EngineParts(Protocol):
    """What a batch session and scoring use of :class:`~llmos.models.ModelEngine` (which has
    each of these): the loaded model, its special token ids and its forward step."""

    loaded: LoadedModel
    _pad_id: int
    _eos_ids: frozenset[int]
    _cache_kw: str
    _logits_kw: dict[str, Any]

    @property
    def context_window(self) -> int: ...

    def grammars(self) -> Grammars: ...

    def _prepare(self, index: int, params: GenerateParams) -> list[int]: ...

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> torch.Tensor: ...


OnToken = Callable[[int, str], None]
ShouldCancel = Callable[[int], bool]


@dataclass(eq=False)
class _Row:
    """The running state of one request."""

    index: int
    params: GenerateParams
    prompt_ids: list[int]
    stream: TextStream
    generator: torch.Generator | None
    added: float
    control: RepetitionControl | None = None
    constraint: Constraint | None = None
    completion_tokens: int = 0


@dataclass(eq=False)
class _Batch:
    """Rows in flight with their KV cache; ``logits`` are each row's next-token logits."""

    rows: list[_Row]
    cache: Any
    mask: torch.Tensor
    next_position: torch.Tensor
    logits: torch.Tensor


class BatchSession:
    """A batch of requests in progress; more can join between steps (continuous batching).

    Created by :meth:`ModelEngine.session`. Call :meth:`add` for each request, then
    :meth:`step` until :attr:`running` is 0; requests added between steps join the batch at
    the next step. Under greedy decoding each request gives the same text as alone, whenever
    it joins. Not thread-safe: one thread adds and steps.

    Args:
        engine: the engine whose model runs the batch.
        on_token: called as ``on_token(i, chunk)`` with each new piece of request ``i``'s text;
            the chunks of a request concatenate exactly to its final text, and never include a
            stop string or text after it.
        should_cancel: called as ``should_cancel(i)`` before request ``i`` starts, and before
            and after each of its tokens; True ends it with finish reason ``"cancelled"``, so a
            request cancelled between steps leaves the batch at the next step.
    """

    def __init__(
        self,
        engine: EngineParts,
        on_token: OnToken | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> None:
        self._engine = engine
        self._on_token = on_token
        self._should_cancel = should_cancel
        self._count = 0
        self._waiting: list[_Row] = []
        self._batch: _Batch | None = None
        self._done: list[tuple[int, GenerateResult | ModelError]] = []
        self._failed: BaseException | None = None

    @property
    def running(self) -> int:
        """Requests added and not yet finished (waiting to join or in the batch)."""
        return len(self._waiting) + (len(self._batch.rows) if self._batch else 0)

    @property
    def has_results(self) -> bool:
        """True while :meth:`step` still has results to hand out."""
        return bool(self.running or self._done)

    def usage(self, index: int) -> tuple[int, int] | None:
        """The prompt tokens fed and tokens generated so far for request ``index`` (None when
        it never reached the model: waiting to join, refused, or unknown). Still readable
        after a failed :meth:`step`, for the requests it lost."""
        for i, result in self._done:
            if i == index and isinstance(result, GenerateResult):
                return result.prompt_tokens, result.completion_tokens
        rows = self._batch.rows if self._batch is not None else []
        row = next((r for r in rows if r.index == index), None)
        return None if row is None else (len(row.prompt_ids), row.completion_tokens)

    def add(self, params: GenerateParams) -> int:
        """Queue a request to join the batch at the next step; return its index.

        A request that cannot run (not a GenerateParams, or too long for the context window)
        gets its :class:`ModelError` as its result from the next :meth:`step`.
        """
        index = self._count
        self._count += 1
        if not isinstance(params, GenerateParams):
            self._done.append(
                (
                    index,
                    ModelError(
                        f"request {index} is a {type(params).__name__}, not a GenerateParams; "
                        "build it with GenerateParams(messages=... or prompt=...)"
                    ),
                )
            )
            return index
        try:
            ids = self._engine._prepare(index, params)
            constraint = None
            if params.json_schema is not None:
                budget = params.max_new_tokens + params.finish_sentence
                constraint = self._engine.grammars().constraint(params.json_schema, budget)
        except ModelError as exc:
            self._done.append((index, exc))
            return index
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self._engine.loaded.device)
            generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        stream = TextStream(self._engine.loaded.tokenizer, ids, params.stop)
        control = None
        if params.repetition_penalty != 1.0 or params.no_repeat_ngram:
            tokenizer = self._engine.loaded.tokenizer
            avoid = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in params.avoid]
            control = RepetitionControl(params.repetition_penalty, params.no_repeat_ngram, avoid)
        row = _Row(index, params, ids, stream, generator, time.perf_counter(), control, constraint)
        self._waiting.append(row)
        return index

    def step(self) -> list[tuple[int, GenerateResult | ModelError]]:
        """Admit waiting requests, generate one token for every row, return what finished.

        Returns:
            ``(index, result)`` for each request that finished since the last step, including
            refused ones (their :class:`ModelError`).

        Raises:
            ModelOutOfMemory: the device ran out of memory; the session is unusable after it.
            ModelError: the model failed a forward pass (the session is unusable after it),
                or the session already failed.
            Exception: whatever ``on_token`` or ``should_cancel`` raised, unchanged (the
                session is unusable after it).
        """
        if self._failed is not None:
            raise ModelError(
                "this batch session failed earlier and lost its requests; start a new one with "
                "engine.session()"
            ) from self._failed
        try:
            with torch.inference_mode():
                self._step()
        except BaseException as exc:
            self._failed = exc
            raise
        done, self._done = self._done, []
        return done

    # -- internals ---------------------------------------------------------------------------

    def _emit(self, row: _Row, chunk: str) -> None:
        if chunk and self._on_token is not None:
            self._on_token(row.index, chunk)

    def _finish(self, row: _Row, reason: FinishReason) -> None:
        if reason != "stop" or not row.stream.stopped:
            self._emit(row, row.stream.flush())
            # The held-back tail can still complete a stop string when the stream ends.
            if row.stream.stopped:
                reason = "stop"
        result = GenerateResult(
            text=row.stream.text,
            finish_reason=reason,
            prompt_tokens=len(row.prompt_ids),
            completion_tokens=row.completion_tokens,
            generation_seconds=time.perf_counter() - row.added,
        )
        self._done.append((row.index, result))

    def _cancelled(self, row: _Row) -> bool:
        if self._should_cancel is not None and self._should_cancel(row.index):
            self._finish(row, "cancelled")
            return True
        return False

    def _take(self, row: _Row, token: int) -> bool:
        """Take one generated token; return True when the request is finished."""
        if self._cancelled(row):  # cancelled since the last step: the token is not taken
            return True
        row.completion_tokens += 1
        if token in self._engine._eos_ids:
            self._finish(row, "stop")
            return True
        if row.constraint is not None and not row.constraint.accept(token):
            self._done.append(
                (row.index, ModelError(f"request {row.index}: token {token} broke its grammar"))
            )
            return True
        if row.control is not None:
            row.control.push(token)
        self._emit(row, row.stream.push(token))
        if row.stream.stopped or (row.constraint is not None and row.constraint.complete):
            self._finish(row, "stop")
        elif self._out_of_tokens(row):
            self._finish(row, "length")
        else:
            return self._cancelled(row)
        return True

    @staticmethod
    def _out_of_tokens(row: _Row) -> bool:
        """Past ``max_new_tokens``: at a sentence end, or out of ``finish_sentence`` tokens."""
        over = row.completion_tokens - row.params.max_new_tokens
        if over < 0:
            return False
        return over >= row.params.finish_sentence or ends_sentence(row.stream.text)

    def _step(self) -> None:
        waiting, self._waiting = self._waiting, []
        joining = [r for r in waiting if not self._cancelled(r)]
        if joining and self._batch is not None and _plain_layers(self._batch.cache) is None:
            # A cache of another kind (sliding windows, ...) cannot be merged into safely:
            # the newcomers wait for the running batch to end.
            self._waiting, joining = joining, []
        if joining:
            new = self._prefill(joining)
            if self._batch is None:
                self._batch = new
            else:
                _merge(self._batch, new)
        batch = self._batch
        if batch is None:
            return
        tokens = _pick(batch.rows, batch.logits)
        keep = [b for b, r in enumerate(batch.rows) if not self._take(r, tokens[b])]
        if not keep:
            self._batch = None
            return
        if len(keep) < len(batch.rows):
            _select(batch, keep)
            tokens = [tokens[b] for b in keep]
        device = batch.mask.device
        step_ids = torch.tensor(tokens, dtype=torch.long, device=device).unsqueeze(-1)
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=-1)
        batch.logits = self._engine._forward(step_ids, batch.mask, batch.next_position, batch.cache)
        batch.next_position = batch.next_position + 1

    def _prefill(self, rows: list[_Row]) -> _Batch:
        from transformers import DynamicCache

        device = self._engine.loaded.device
        width = max(len(r.prompt_ids) for r in rows)
        input_ids = torch.full((len(rows), width), self._engine._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            input_ids[b, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[b, width - len(r.prompt_ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        # Positions count real tokens only, so a left-padded row sees the positions it would
        # see alone; pad slots get 0 (they are masked out anyway).
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self._engine._forward(input_ids, mask, positions, cache)
        return _Batch(rows, cache, mask, mask.sum(-1, keepdim=True), logits)


def _pick(rows: list[_Row], logits: torch.Tensor) -> list[int]:
    """Choose each row's next token: argmax, or a seeded sample with temperature/top_p, after
    the row's repetition control (if any) reshaped its logits and its grammar (if any) masked
    the tokens it forbids. Each row is shaped on its own: constrained and free rows mix."""
    tokens: list[int] = logits.argmax(-1).tolist()
    for b, r in enumerate(rows):
        row = logits[b] if r.control is None else r.control.apply(logits[b])
        if r.constraint is not None:
            row = r.constraint.mask(row)
        if r.generator is not None:
            tokens[b] = _sample(row, r.params.temperature, r.params.top_p, r.generator)
        elif r.control is not None or r.constraint is not None:
            tokens[b] = int(row.argmax().item())
    return tokens


def _sample(logits: torch.Tensor, temperature: float, top_p: float, gen: torch.Generator) -> int:
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p >= 1.0:
        return int(torch.multinomial(probs, 1, generator=gen).item())
    sorted_probs, order = torch.sort(probs, descending=True)
    # Keep the smallest set of most likely tokens whose mass reaches top_p (at least one).
    outside = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    choice = torch.multinomial(sorted_probs, 1, generator=gen)
    return int(order[choice].item())


def _plain_layers(cache: Any) -> list[Any] | None:
    """The cache's layers when all are plain dynamic layers (safe to reshape), else None."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    return list(layers)


def _select(batch: _Batch, keep: list[int]) -> None:
    """Keep only the rows ``keep`` and cut the columns that became padding in all of them."""
    index = torch.tensor(keep, device=batch.mask.device)
    batch.rows = [batch.rows[b] for b in keep]
    batch.cache.batch_select_indices(index)
    batch.mask, batch.next_position = batch.mask[index], batch.next_position[index]
    batch.logits = batch.logits[index]
    real = batch.mask.any(dim=0).nonzero()
    first = int(real[0].item()) if len(real) else 0
    layers = _plain_layers(batch.cache)
    if first == 0 or layers is None:
        return
    for layer in layers:
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys[..., first:, :]
            layer.values = layer.values[..., first:, :]
    batch.mask = batch.mask[:, first:]


def _merge(batch: _Batch, new: _Batch) -> None:
    """Append ``new``'s rows to ``batch``, left-padding the shorter cache."""
    old_layers, new_layers = _plain_layers(batch.cache), _plain_layers(new.cache)
    if old_layers is None or new_layers is None or len(old_layers) != len(new_layers):
        raise ModelError(
            "cannot merge new requests into the running batch: its KV cache changed kind; "
            "this is a bug in llmos, please report it"
        )
    width = max(batch.mask.shape[1], new.mask.shape[1])

    def pad(t: torch.Tensor, dim_from_end: int) -> torch.Tensor:
        missing = width - t.shape[-dim_from_end]
        if missing == 0:
            return t
        # F.pad takes (last dim left, last dim right, next dim left, ...).
        spec = [0, 0] * (dim_from_end - 1) + [missing, 0]
        return torch.nn.functional.pad(t, spec)

    for old, fresh in zip(old_layers, new_layers, strict=True):
        old.keys = torch.cat([pad(old.keys, 2), pad(fresh.keys, 2)], dim=0)
        old.values = torch.cat([pad(old.values, 2), pad(fresh.values, 2)], dim=0)
    batch.mask = torch.cat([pad(batch.mask, 1), pad(new.mask, 1)], dim=0)
    batch.next_position = torch.cat([batch.next_position, new.next_position], dim=0)
    batch.logits = torch.cat([batch.logits, new.logits], dim=0)
    batch.rows = batch.rows + new.rows
