"""Request and result records of the model engine, and its out-of-memory error.

`GenerateParams` validates itself on construction, so a malformed request fails where it is
built (in the caller's thread, before it reaches a model actor) with a :class:`ModelError` that
names the field and the fix. Limits that depend on the loaded model (the context window) are
checked later, by the engine.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ._chat_tools import check_tool_fields, check_tools
from ._errors import ModelError

__all__ = [
    "MAX_NEW_TOKENS_CAP",
    "GenerateParams",
    "GenerateResult",
    "ModelOutOfMemory",
    "check_json_schema",
]

#: Hard upper bound on ``max_new_tokens`` whatever the model's context window.
MAX_NEW_TOKENS_CAP = 2048
#: The strongest ``repetition_penalty`` accepted.
MAX_REPETITION_PENALTY = 10.0
#: The most characters ``avoid`` may hold in all.
MAX_AVOID_CHARS = 20_000

_ROLES = ("system", "user", "assistant", "tool")
_TOOL_KEYS = {"assistant": ("tool_calls",), "tool": ("name",)}

#: The longest schema text accepted.
MAX_SCHEMA_CHARS = 64_000


def check_json_schema(schema: Any) -> str:
    """Return ``schema`` (JSON text of an object schema) or raise ModelError saying why not."""
    if not isinstance(schema, str) or not schema:
        raise ModelError(
            f"json_schema must be the JSON text of a schema, got {type(schema).__name__}; "
            "pass json.dumps(schema) (or Model.model_json_schema() dumped)"
        )
    if len(schema) > MAX_SCHEMA_CHARS:
        raise ModelError(f"json_schema is {len(schema)} characters, over {MAX_SCHEMA_CHARS}")
    try:
        parsed = json.loads(schema)
    except ValueError as exc:
        raise ModelError(f"json_schema is not valid JSON ({exc}); pass json.dumps(schema)") from exc
    if not isinstance(parsed, dict):
        raise ModelError(f"json_schema must be a JSON object, got {type(parsed).__name__}")
    return schema


FinishReason = Literal["stop", "length", "cancelled"]


class ModelOutOfMemory(ModelError):
    """Raised when the device ran out of memory during a forward pass.

    Unlike a plain :class:`ModelError` (a refused or failed request), this says the model's
    process may be in a bad state: the caller should retry with fewer or shorter requests, or
    restart the model actor to free the memory.
    """


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list | tuple) or not messages:
        raise ModelError(
            f"messages must be a non-empty list of {{'role': ..., 'content': ...}} dicts, "
            f"got {type(messages).__name__}{'' if messages else ' (empty)'}; "
            f"pass at least one user message"
        )
    copied: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ModelError(
                f"messages[{i}] must be a dict with 'role' and 'content', "
                f"got {type(message).__name__}"
            )
        role = message.get("role")
        extra = set(message) - {
            "role",
            "content",
            *(_TOOL_KEYS.get(role, ()) if isinstance(role, str) else ()),
        }
        if extra:
            raise ModelError(
                f"messages[{i}] has unknown keys {sorted(map(str, extra))}; "
                f"only 'role' and 'content' are allowed (and 'tool_calls' in an assistant "
                f"message, 'name' in a tool message)"
            )
        content = message.get("content")
        if role not in _ROLES:
            raise ModelError(f"messages[{i}] has role {role!r}; use one of {', '.join(_ROLES)}")
        if not isinstance(content, str):
            raise ModelError(f"messages[{i}] content must be a str, got {type(content).__name__}")
        copied.append({"role": role, "content": content})
        check_tool_fields(i, message, copied[-1])
    return copied


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not low <= value <= high:
        raise ModelError(f"{name}={value} is out of range; use {low}..{high}")


def _check_float(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ModelError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ModelError(f"{name} must be finite, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GenerateParams:
    """One generation request. Exactly one of ``messages`` and ``prompt`` is given.

    Args:
        messages: a chat, ``[{"role": "system"|"user"|"assistant"|"tool", "content": str},
            ...]``, formatted with the model's chat template and an assistant turn opened for
            the reply; an assistant message may carry ``tool_calls``, a tool message ``name``
            (see ``llmos.models._chat_tools``; only for a template that renders them).
        prompt: raw text fed to the model as is (no chat template).
        max_new_tokens: at most this many tokens are generated (1..``MAX_NEW_TOKENS_CAP``; the
            prompt plus this must also fit the model's context window).
        temperature: 0 for greedy decoding, above 0 to sample.
        top_p: nucleus sampling mass, 0 < top_p <= 1 (1 keeps every token).
        stop: strings that end the generation; the text is cut before the first one found.
        seed: seeds this request's own random generator, so a sampled answer is reproducible
            whatever other requests share its batch. None draws a fresh seed.
        truncate: when the request does not fit the context window, drop the oldest non-system
            messages (or, for a prompt, its oldest tokens) until it fits, instead of failing.
        repetition_penalty: divides the positive logits (multiplies the negative ones) of
            tokens already in the completion or in ``avoid``; 1.0 (the default) turns it off,
            1.1-1.3 keeps a small model from looping.
        no_repeat_ngram: a token that would repeat an n-gram of this many tokens (of the
            completion so far, or of one of the ``avoid`` texts) is never chosen; 0 turns it
            off, else 2..16.
        avoid: texts the completion must not copy (a dialogue's earlier turns, say): their
            tokens are penalized and their n-grams banned as if generated before.
        finish_sentence: when ``max_new_tokens`` is reached in the middle of a sentence, go on
            for at most this many more tokens and stop at the first sentence end; 0 stops at
            ``max_new_tokens`` exactly.
        json_schema: the JSON text of a JSON schema: the answer is generated under
            constrained decoding, so it is compact JSON valid against the schema (unless it
            runs out of tokens first: finish reason ``"length"``). None generates freely.
        tools: tool definitions the chat template renders (``[{"type": "function",
            "function": {"name", "description", "parameters"}}]``); only with ``messages``,
            and only for a model whose template supports tools (``ModelInfo.tools``).

    Raises:
        ModelError: a field has the wrong type or is out of range; the message names it.
    """

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = field(default=())
    seed: int | None = None
    truncate: bool = False
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0
    avoid: tuple[str, ...] = field(default=())
    finish_sentence: int = 0
    json_schema: str | None = None
    tools: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ModelError(
                "give exactly one of messages= (a chat) or prompt= (raw text), "
                f"got {'both' if self.messages is not None else 'neither'}"
            )
        if self.messages is not None:
            # Copied so that a caller mutating its list later cannot change a queued request.
            object.__setattr__(self, "messages", _check_messages(self.messages))
        elif not isinstance(self.prompt, str) or not self.prompt:
            raise ModelError(
                f"prompt must be a non-empty str, got {type(self.prompt).__name__} {self.prompt!r}"
            )
        _check_int("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS_CAP)
        temperature = _check_float("temperature", self.temperature)
        if temperature < 0:
            raise ModelError(f"temperature={temperature} is negative; use 0 (greedy) or above")
        top_p = _check_float("top_p", self.top_p)
        if not 0 < top_p <= 1:
            raise ModelError(f"top_p={top_p} is out of range; use 0 < top_p <= 1")
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "top_p", top_p)
        if isinstance(self.stop, str) or not isinstance(self.stop, tuple | list):
            raise ModelError(
                f"stop must be a tuple of strings, got {type(self.stop).__name__} "
                f"{self.stop!r}; wrap a single string as stop=({self.stop!r},)"
            )
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise ModelError(f"every stop string must be a non-empty str, got {s!r}")
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.seed is not None:
            _check_int("seed", self.seed, 0, 2**63 - 1)
        if not isinstance(self.truncate, bool):
            raise ModelError(f"truncate must be a bool, got {type(self.truncate).__name__}")
        self._check_repetition()
        if self.json_schema is not None:
            check_json_schema(self.json_schema)
        if self.tools is not None:
            if self.messages is None:
                raise ModelError("tools are rendered by the chat template: give messages=")
            object.__setattr__(self, "tools", check_tools(self.tools))

    def _check_repetition(self) -> None:
        penalty = _check_float("repetition_penalty", self.repetition_penalty)
        if not 1.0 <= penalty <= MAX_REPETITION_PENALTY:
            raise ModelError(
                f"repetition_penalty={penalty} is out of range; use 1.0 (off) up to "
                f"{MAX_REPETITION_PENALTY:g} (1.1-1.3 is usual)"
            )
        object.__setattr__(self, "repetition_penalty", penalty)
        _check_int("no_repeat_ngram", self.no_repeat_ngram, 0, 16)
        if self.no_repeat_ngram == 1:
            raise ModelError("no_repeat_ngram=1 would ban every token seen; use 0 (off) or 2..16")
        if isinstance(self.avoid, str) or not isinstance(self.avoid, tuple | list):
            raise ModelError(
                f"avoid must be a tuple of strings, got {type(self.avoid).__name__}; wrap a "
                "single text as avoid=(text,)"
            )
        if not all(isinstance(a, str) for a in self.avoid):
            raise ModelError("every text in avoid must be a str")
        if sum(len(a) for a in self.avoid) > MAX_AVOID_CHARS:
            raise ModelError(
                f"avoid holds {sum(len(a) for a in self.avoid)} characters, over "
                f"{MAX_AVOID_CHARS}; pass only the latest turns"
            )
        object.__setattr__(self, "avoid", tuple(self.avoid))
        _check_int("finish_sentence", self.finish_sentence, 0, 256)


@dataclass(frozen=True)
class GenerateResult:
    """The outcome of one request.

    Args:
        text: the generated text (cut before a stop string when one was found).
        finish_reason: ``"stop"`` (end-of-sequence token or a stop string), ``"length"``
            (reached ``max_new_tokens``) or ``"cancelled"`` (``should_cancel`` said so).
        prompt_tokens: tokens in the prompt as fed to the model (after any truncation).
        completion_tokens: tokens the model generated for this request, counting the
            end-of-sequence token when it ended on one.
        generation_seconds: wall time from the start of the batch to this request's end.
    """

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    generation_seconds: float
