"""The model engine: one batched token loop over many generation requests.

:class:`ModelEngine` is a plain class (not an actor, not thread-safe): the model actor owns one
and calls :meth:`ModelEngine.generate_batch` from its own thread. Requests are left-padded into
one batch with an attention mask and explicit position ids, so each row computes what it would
compute alone: under greedy decoding a request gives the same text in a batch as on its own.
The loop keeps a KV cache, samples per request (each with its own seeded generator), streams
text chunks, honours stop strings and cancellation, and drops finished rows from the batch.

Loading lives in ``_engine_load``, the request records in ``_engine_params`` and the
detokenizer in ``_engine_text``; this module re-exports their public names.
"""

from __future__ import annotations

import inspect
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llmos.actors import ModelError
from llmos.agents._engine_load import (
    DEFAULT_MODEL_PACKAGE,
    LoadedModel,
    _is_oom,
    default_cache_dir,
    default_model_file,
    load_model,
)
from llmos.agents._engine_params import (
    MAX_NEW_TOKENS_CAP,
    FinishReason,
    GenerateParams,
    GenerateResult,
    ModelOutOfMemory,
)
from llmos.agents._engine_text import TextStream

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "MAX_NEW_TOKENS_CAP",
    "GenerateParams",
    "GenerateResult",
    "LoadedModel",
    "ModelEngine",
    "ModelOutOfMemory",
    "default_cache_dir",
    "default_model_file",
    "load_model",
]

OnToken = Callable[[int, str], None]
ShouldCancel = Callable[[int], bool]


@dataclass(eq=False)
class _Row:
    """The running state of one request in the batch."""

    index: int
    params: GenerateParams
    prompt_ids: list[int]
    stream: TextStream
    generator: torch.Generator | None
    completion_tokens: int = 0
    result: GenerateResult | None = field(default=None)


class ModelEngine:
    """Generates for batches of requests with one loaded model.

    Not thread-safe: one thread (the model actor's) calls it at a time.

    Args:
        loaded: the model, from :func:`load_model`.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self._tokenizer = loaded.tokenizer
        self._model = loaded.model
        self._pad_id: int = loaded.tokenizer.pad_token_id
        self._eos_ids = self._find_eos_ids(loaded)
        forward = getattr(loaded.model, "forward", loaded.model)
        try:
            params = inspect.signature(forward).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        # Asking for the last position's logits only skips a (batch x prompt x vocab) matmul.
        self._logits_kw: dict[str, Any] = (
            {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        )
        # transformers renamed past_key_values to cache (5.x); use whichever the model takes.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"

    @property
    def context_window(self) -> int:
        """The most tokens (prompt plus generated) one request may use."""
        return self.loaded.context_window

    @staticmethod
    def _find_eos_ids(loaded: LoadedModel) -> frozenset[int]:
        ids: set[int] = set()
        if loaded.tokenizer.eos_token_id is not None:
            ids.add(int(loaded.tokenizer.eos_token_id))
        # Chat models often end a turn with a token other than the tokenizer's eos
        # (Llama 3's <|eot_id|>); the generation config lists them all.
        config_eos = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
        if isinstance(config_eos, int):
            ids.add(config_eos)
        elif isinstance(config_eos, list | tuple):
            ids.update(int(i) for i in config_eos)
        return frozenset(ids)

    # -- preparing requests ------------------------------------------------------------------

    def _encode_messages(self, index: int, messages: list[dict[str, str]]) -> list[int]:
        if not getattr(self._tokenizer, "chat_template", None):
            raise ModelError(
                f"request {index}: model {self.loaded.name} has no chat template; "
                "pass prompt= (raw text) instead of messages="
            )
        try:
            text = self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:
            raise ModelError(
                f"request {index}: the chat template of {self.loaded.name} rejected the "
                f"messages ({type(exc).__name__}: {exc}); check the order of roles it expects"
            ) from exc
        # The template already writes any BOS token; adding special tokens would double it.
        ids: list[int] = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _prepare(self, index: int, params: GenerateParams) -> list[int]:
        """Tokenize one request and fit it to the context window (or explain why not)."""
        window = self.context_window
        budget = window - params.max_new_tokens
        if budget < 1:
            raise ModelError(
                f"request {index}: max_new_tokens={params.max_new_tokens} leaves no room for a "
                f"prompt in the context window of {window} tokens of {self.loaded.name}; "
                f"lower max_new_tokens below {window}"
            )
        if params.prompt is not None:
            ids: list[int] = self._tokenizer(params.prompt)["input_ids"]
            if not ids:
                raise ModelError(f"request {index}: the prompt encodes to no tokens; give text")
            if len(ids) > budget and params.truncate:
                ids = ids[-budget:]
        else:
            assert params.messages is not None
            messages = list(params.messages)
            ids = self._encode_messages(index, messages)
            while len(ids) > budget and params.truncate and _drop_oldest_turn(messages):
                ids = self._encode_messages(index, messages)
        if len(ids) > budget:
            raise ModelError(
                f"request {index}: prompt of {len(ids)} tokens + max_new_tokens="
                f"{params.max_new_tokens} = {len(ids) + params.max_new_tokens} tokens exceeds "
                f"the context window of {window} tokens of {self.loaded.name}; shorten the "
                "prompt, lower max_new_tokens"
                + (
                    " (truncate=True could not drop enough: the system messages and the last "
                    "message alone are too long)"
                    if params.truncate
                    else ", or pass truncate=True to drop the oldest turns"
                )
            )
        return ids

    def _new_row(self, index: int, params: GenerateParams, ids: list[int]) -> _Row:
        generator = None
        if params.temperature > 0:
            generator = torch.Generator(device=self.loaded.device)
            seed = params.seed if params.seed is not None else secrets.randbits(63)
            generator.manual_seed(seed)
        return _Row(index, params, ids, TextStream(self._tokenizer, ids, params.stop), generator)

    # -- the token loop ----------------------------------------------------------------------

    def generate(
        self,
        params: GenerateParams,
        on_token: Callable[[str], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> GenerateResult:
        """Generate for one request; see :meth:`generate_batch`.

        Raises:
            ModelError: the request was refused (too long for the context window, ...).
            ModelOutOfMemory: the device ran out of memory.
        """
        result = self.generate_batch(
            [params],
            on_token=None if on_token is None else lambda _i, chunk: on_token(chunk),
            should_cancel=None if should_cancel is None else lambda _i: should_cancel(),
        )[0]
        if isinstance(result, ModelError):
            raise result
        return result

    def generate_batch(
        self,
        requests: Sequence[GenerateParams],
        on_token: OnToken | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> list[GenerateResult | ModelError]:
        """Generate for all requests in one batched loop.

        Under greedy decoding (temperature 0) each request gets the same text it would get
        alone. A request that finishes (end-of-sequence token, stop string, its own
        ``max_new_tokens``, or cancelled) leaves the batch; the others go on.

        Args:
            requests: the requests; result ``i`` answers request ``i``.
            on_token: called as ``on_token(i, chunk)`` with each new piece of request ``i``'s
                text, in order; the chunks of a request concatenate exactly to its final
                text, and never include a stop string or text after it.
            should_cancel: called as ``should_cancel(i)`` before the batch starts and after
                each generated token of a running request; True ends request ``i`` with
                finish reason ``"cancelled"`` and the text generated so far.

        Returns:
            One entry per request: a :class:`GenerateResult`, or the :class:`ModelError` that
            refused that request (malformed, or too long for the context window). A refused
            request does not affect the others.

        Raises:
            ModelOutOfMemory: the device ran out of memory; no request has a result.
            ModelError: the model failed a forward pass.
            Exception: whatever ``on_token`` or ``should_cancel`` raised, unchanged (the
                batch is abandoned).
        """
        start = time.perf_counter()
        results: list[GenerateResult | ModelError | None] = [None] * len(requests)
        rows: list[_Row] = []
        for i, params in enumerate(requests):
            if not isinstance(params, GenerateParams):
                results[i] = ModelError(
                    f"request {i} is a {type(params).__name__}, not a GenerateParams; "
                    "build it with GenerateParams(messages=... or prompt=...)"
                )
                continue
            try:
                rows.append(self._new_row(i, params, self._prepare(i, params)))
            except ModelError as exc:
                results[i] = exc
        running = [r for r in rows if not self._cancelled(r, should_cancel, on_token, start)]
        if running:
            with torch.inference_mode():
                self._run(running, on_token, should_cancel, start)
        for r in rows:
            results[r.index] = r.result
        done = [r for r in results if r is not None]
        assert len(done) == len(requests), "every request gets a result or an error"
        return done

    def _finish(
        self, row: _Row, reason: FinishReason, on_token: OnToken | None, start: float
    ) -> None:
        if reason != "stop" or not row.stream.stopped:
            chunk = row.stream.flush()
            if chunk and on_token is not None:
                on_token(row.index, chunk)
            # The held-back tail can still complete a stop string when the stream ends.
            if row.stream.stopped:
                reason = "stop"
        row.result = GenerateResult(
            text=row.stream.text,
            finish_reason=reason,
            prompt_tokens=len(row.prompt_ids),
            completion_tokens=row.completion_tokens,
            generation_seconds=time.perf_counter() - start,
        )

    def _cancelled(
        self,
        row: _Row,
        should_cancel: ShouldCancel | None,
        on_token: OnToken | None,
        start: float,
    ) -> bool:
        if should_cancel is not None and should_cancel(row.index):
            self._finish(row, "cancelled", on_token, start)
            return True
        return False

    def _step(self, row: _Row, token: int, on_token: OnToken | None, start: float) -> bool:
        """Take one generated token; return True when the request is finished."""
        row.completion_tokens += 1
        if token in self._eos_ids:
            self._finish(row, "stop", on_token, start)
            return True
        chunk = row.stream.push(token)
        if chunk and on_token is not None:
            on_token(row.index, chunk)
        if row.stream.stopped:
            self._finish(row, "stop", on_token, start)
            return True
        if row.completion_tokens >= row.params.max_new_tokens:
            self._finish(row, "length", on_token, start)
            return True
        return False

    def _run(
        self,
        rows: list[_Row],
        on_token: OnToken | None,
        should_cancel: ShouldCancel | None,
        start: float,
    ) -> None:
        from transformers import DynamicCache

        device = self.loaded.device
        width = max(len(r.prompt_ids) for r in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            input_ids[b, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[b, width - len(r.prompt_ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        # Positions count real tokens only, so a left-padded row sees the positions it would
        # see alone; pad slots get 0 (they are masked out anyway).
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        next_position = mask.sum(-1, keepdim=True)
        cache = DynamicCache()
        logits = self._forward(input_ids, mask, positions, cache)
        while True:
            tokens = self._pick(rows, logits)
            keep = [
                b
                for b, (r, t) in enumerate(zip(rows, tokens, strict=True))
                if not self._step(r, t, on_token, start)
                and not self._cancelled(r, should_cancel, on_token, start)
            ]
            if not keep:
                return
            if len(keep) < len(rows):
                index = torch.tensor(keep, device=device)
                rows = [rows[b] for b in keep]
                tokens = [tokens[b] for b in keep]
                cache.batch_select_indices(index)
                mask, next_position = mask[index], next_position[index]
                mask = _trim_left_padding(mask, cache)
            step_ids = torch.tensor(tokens, dtype=torch.long, device=device).unsqueeze(-1)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
            logits = self._forward(step_ids, mask, next_position, cache)
            next_position = next_position + 1

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        try:
            out = self._model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                use_cache=True,
                **{self._cache_kw: cache},
                **self._logits_kw,
            )
        except Exception as exc:
            rows, width = input_ids.shape
            if _is_oom(exc):
                raise ModelOutOfMemory(
                    f"out of memory in a forward pass over {rows} requests x {width} tokens "
                    f"on {self.loaded.device}: {exc}; retry with fewer or shorter requests, or "
                    "restart the model actor to free the memory"
                ) from exc
            raise ModelError(
                f"model {self.loaded.name} failed a forward pass over {rows} requests x "
                f"{width} tokens: {type(exc).__name__}: {exc}; the model may not support "
                "batched generation this way, try another model or report it"
            ) from exc
        logits: torch.Tensor = out.logits[:, -1, :].float()
        return logits

    @staticmethod
    def _pick(rows: list[_Row], logits: torch.Tensor) -> list[int]:
        """Choose each row's next token: argmax, or a seeded sample with temperature/top_p."""
        tokens: list[int] = logits.argmax(-1).tolist()
        for b, r in enumerate(rows):
            if r.generator is not None:
                tokens[b] = _sample(logits[b], r.params.temperature, r.params.top_p, r.generator)
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


def _drop_oldest_turn(messages: list[dict[str, str]]) -> bool:
    """Drop the oldest non-system message (never the last); False when none can go.

    When that leaves an assistant message first, it goes too, so the chat still opens with a
    user turn (some chat templates insist on it).
    """
    turns = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
    if not turns:
        return False
    del messages[turns[0]]
    rest = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
    if rest and messages[rest[0]]["role"] == "assistant":
        del messages[rest[0]]
    return True


def _trim_left_padding(mask: torch.Tensor, cache: Any) -> torch.Tensor:
    """Cut the columns that are padding in every remaining row, from the mask and the cache.

    After long prompts leave the batch, the others need not attend over their padding.
    Only plain dynamic cache layers are trimmed; any other cache is left as it is.
    """
    from transformers.cache_utils import DynamicLayer

    real = mask.any(dim=0).nonzero()
    first = int(real[0].item()) if len(real) else 0
    layers = getattr(cache, "layers", None)
    if first == 0 or not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return mask
    for layer in layers:
        if layer.is_initialized and layer.keys is not None and layer.keys.numel():
            layer.keys = layer.keys[..., first:, :]
            layer.values = layer.values[..., first:, :]
    return mask[:, first:]
