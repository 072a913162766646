"""The model engine: generation for batches of requests with one loaded model.

:class:`ModelEngine` is a plain class (not an actor, not thread-safe): the model actor owns one
and calls :meth:`ModelEngine.generate_batch` (or drives a :class:`BatchSession`, which requests
can join mid-way) from its own thread. Under greedy decoding a request gives the same text in
a batch as on its own. The engine tokenizes requests, fits them to the context window and runs
the forward pass; the token loop lives in ``_engine_batch``.

Loading lives in ``_engine_load``, the request records in ``_engine_params``, the token loop in
``_engine_batch`` and the detokenizer in ``_engine_text``; this module re-exports their public
names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._chat_tools import ChatFeatures, chat_features
from ._engine_batch import BatchSession, OnToken, ShouldCancel
from ._engine_grammar import Grammars
from ._engine_load import (
    DEFAULT_MODEL_PACKAGE,
    LoadedModel,
    _is_oom,
    default_cache_dir,
    default_model_file,
    load_model,
    shared_model,
)
from ._engine_params import (
    MAX_NEW_TOKENS_CAP,
    GenerateParams,
    GenerateResult,
    ModelOutOfMemory,
)
from ._engine_score import score_candidates
from ._errors import ModelError
from ._messages import ModelInfo

__all__ = [
    "DEFAULT_MODEL_PACKAGE",
    "MAX_NEW_TOKENS_CAP",
    "BatchSession",
    "GenerateParams",
    "GenerateResult",
    "LoadedModel",
    "ModelEngine",
    "ModelOutOfMemory",
    "default_cache_dir",
    "default_model_file",
    "load_model",
    "shared_model",
]


class ModelEngine:
    """Generates for batches of requests with one loaded model.

    Not thread-safe: one thread (the model actor's) calls it at a time.

    Args:
        loaded: the model, from :func:`load_model`.
        chat_template: a Jinja chat template to format ``messages`` with instead of the
            tokenizer's own (one with tool support, say); the shared tokenizer is left as is.
    """

    def __init__(self, loaded: LoadedModel, chat_template: str | None = None) -> None:
        self.loaded = loaded
        self.chat_template = chat_template
        self._features: ChatFeatures | None = None
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
        self._grammars: Grammars | None = None

    def grammars(self) -> Grammars:
        """The schema compiler of this model's tokenizer (made on first use).

        Raises:
            ModelError: xgrammar is not installed.
        """
        if self._grammars is None:
            vocab = getattr(getattr(self._model, "config", None), "vocab_size", None)
            if not isinstance(vocab, int):
                vocab = len(self._tokenizer)
            self._grammars = Grammars(self._tokenizer, vocab, self._eos_ids)
        return self._grammars

    @property
    def features(self) -> ChatFeatures:
        """What the chat template renders: tools, tool calls, tool messages (found once)."""
        if self._features is None:
            self._features = chat_features(self._tokenizer, self.chat_template)
        return self._features

    def info(self) -> ModelInfo:
        """The model's name, context window and what its chat template renders."""
        f = self.features
        return ModelInfo(
            self.loaded.name, self.context_window, f.template, f.tools, f.tool_calls, f.tool_role
        )

    @property
    def context_window(self) -> int:
        """The most tokens (prompt plus generated) one request may use."""
        window: int = self.loaded.context_window
        return window

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

    def prompt_text(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        index: int = 0,
    ) -> str:
        """The text a chat is given to the model as: ``messages`` (and ``tools``) formatted
        by the chat template, an assistant turn opened for the reply.

        Raises:
            ModelError: no chat template; tools, tool calls or tool messages that the
                template does not render; or the template rejected the messages.
        """
        features = self.features
        name = self.loaded.name
        if not features.template:
            raise ModelError(
                f"request {index}: model {name} has no chat template; "
                "pass prompt= (raw text) instead of messages="
            )
        unsupported = [
            what
            for what, given, ok in (
                ("tools", bool(tools), features.tools),
                ("tool_calls", any("tool_calls" in m for m in messages), features.tool_calls),
                ("tool messages", any(m["role"] == "tool" for m in messages), features.tool_role),
            )
            if given and not ok
        ]
        if unsupported:
            raise ModelError(
                f"request {index}: the chat template of {name} does not render "
                f"{' or '.join(unsupported)} (ModelInfo says what it renders); describe the "
                "tools in the prompt and send calls and results as plain turns, or start the "
                "model with a chat_template that supports tools"
            )
        extra: dict[str, Any] = {"tools": tools} if tools else {}
        try:
            text: str = self._tokenizer.apply_chat_template(
                messages,
                tokenize=False,
                add_generation_prompt=True,
                chat_template=self.chat_template,
                **extra,
            )
        except Exception as exc:
            raise ModelError(
                f"request {index}: the chat template of {name} rejected the "
                f"messages ({type(exc).__name__}: {exc}); check the order of roles it expects"
            ) from exc
        return text

    def _encode_messages(
        self, index: int, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        text = self.prompt_text(messages, tools, index)
        # The template already writes any BOS token; adding special tokens would double it.
        ids: list[int] = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _prepare(self, index: int, params: GenerateParams) -> list[int]:
        """Tokenize one request and fit it to the context window (or explain why not)."""
        window = self.context_window
        budget = window - params.max_new_tokens - params.finish_sentence
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
            ids = self._encode_messages(index, messages, params.tools)
            while len(ids) > budget and params.truncate and _drop_oldest_turn(messages):
                ids = self._encode_messages(index, messages, params.tools)
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

    # -- scoring -----------------------------------------------------------------------------

    def score(self, params: GenerateParams, candidates: Sequence[str]) -> list[float]:
        """The model's log-probability of each candidate as the start of its answer.

        ``params`` gives the prompt (``messages``, formatted with the assistant turn opened,
        or ``prompt``) and ``truncate``; its decoding fields are not used.

        Raises:
            ModelError: the prompt does not fit, a candidate is empty or too long, or the
                forward pass failed.
            ModelOutOfMemory: the device ran out of memory.
        """
        return self.score_counted(params, candidates)[0]

    def score_counted(
        self, params: GenerateParams, candidates: Sequence[str]
    ) -> tuple[list[float], int]:
        """:meth:`score`, with the input tokens its forward passes read: the prompt's, plus
        each candidate's but its last (scored, never fed). Raises as :meth:`score` does."""
        return score_candidates(self, self._prepare(0, params), candidates)

    def tokenize(self, text: str) -> tuple[list[int], list[str]]:
        """How the tokenizer splits ``text`` as generated text (no special tokens): its token
        ids and the decoded text of each."""
        ids = [int(i) for i in self._tokenizer.encode(text, add_special_tokens=False)]
        return ids, [str(self._tokenizer.decode([i])) for i in ids]

    # -- generation --------------------------------------------------------------------------

    def session(
        self, on_token: OnToken | None = None, should_cancel: ShouldCancel | None = None
    ) -> BatchSession:
        """Start a batch that requests can join between steps (continuous batching).

        See :class:`BatchSession`; :meth:`generate_batch` is the simple form of it.
        """
        return BatchSession(self, on_token, should_cancel)

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
        session = self.session(on_token, should_cancel)
        for params in requests:
            session.add(params)
        results: dict[int, GenerateResult | ModelError] = {}
        while session.has_results:
            results.update(session.step())
        return [results[i] for i in range(len(requests))]

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


def _drop_oldest_turn(messages: list[dict[str, Any]]) -> bool:
    """Drop the oldest non-system message (never the last); False when none can go.

    When that leaves an assistant or tool message first, it goes too (and so on), so the
    chat still opens with a user turn (some chat templates insist on it) and no tool result
    is left without its call.
    """
    turns = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
    if not turns:
        return False
    del messages[turns[0]]
    while True:
        rest = [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]
        if not rest or messages[rest[0]]["role"] not in ("assistant", "tool"):
            return True
        del messages[rest[0]]
