"""The messages a model actor understands and answers with.

These are plain registered message classes, so a model actor answers the same way locally, in a
pool, or on another node.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from llmos.actors import ActorRef, Returns, message
from llmos.kernel import Ledger

from ._errors import ModelError

__all__ = [
    "Cancel",
    "Completion",
    "Generate",
    "GetLedger",
    "GetModelInfo",
    "GetModelStats",
    "ModelInfo",
    "ModelStats",
    "Pause",
    "Resume",
    "Score",
    "Scores",
    "TokenChunk",
    "Tokenize",
    "Tokens",
]


@message("llmos.model.Generate")
class Generate:
    """Ask a model actor for a completion.

    Exactly one of ``messages`` (chat turns, formatted by the model's chat template) or
    ``prompt`` (raw text) is given.

    Attributes:
        messages: chat turns, each ``{"role": "system"|"user"|"assistant", "content": str}``;
            with a template that supports tools (:class:`ModelInfo`), also ``{"role":
            "tool", "content": str, "name": str}`` and assistant turns with ``tool_calls``
            (``[{"type": "function", "function": {"name": str, "arguments": {...}}}]``).
        prompt: raw text to continue, instead of ``messages``.
        max_new_tokens: the most tokens to generate (capped by the model actor).
        temperature: 0 for greedy decoding (deterministic), else sampling temperature.
        top_p: nucleus sampling mass (0 < top_p <= 1).
        stop: strings that end the completion (the text is cut before them).
        seed: seed for sampling, so a sampled completion can be reproduced.
        truncate: drop the oldest non-system turns when the prompt is too long, instead of
            failing with ModelError.
        stream_to: a ref that receives each TokenChunk as it is generated, then the Completion.
        requester: who asks (an agent name); used for round-robin fairness and token budgets.
        request_id: an id echoed in chunks and in the completion (default: chosen by the actor).
        repetition_penalty: penalize tokens already in the completion or in ``avoid``
            (1.0: off; 1.1-1.3 keeps a small model from looping).
        no_repeat_ngram: never repeat an n-gram of this many tokens of the completion or of
            ``avoid`` (0: off, else 2..16).
        avoid: texts not to copy, such as a dialogue's earlier turns.
        finish_sentence: tokens allowed past ``max_new_tokens`` to end the sentence there
            (0: stop at ``max_new_tokens``).
        dialogue: the dialogue the request serves ("" outside any), for the token ledger.
        json_schema: the JSON text of a JSON schema: the answer is generated under
            constrained decoding and is compact JSON valid against it (finish reason "stop";
            "length" when it ran out of tokens first). Such requests share a batch with free
            ones.
        tools: tool definitions (``[{"type": "function", "function": {"name": str,
            "description": str, "parameters": {JSON schema}}}]``) rendered by the model's
            chat template; refused (ModelError) by a model whose template does not support
            tools (see :class:`ModelInfo`).
    """

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    truncate: bool = False
    stream_to: ActorRef | None = None
    requester: str = ""
    request_id: str = ""
    repetition_penalty: float = 1.0
    no_repeat_ngram: int = 0
    avoid: tuple[str, ...] = ()
    finish_sentence: int = 0
    dialogue: str = ""
    json_schema: str | None = None
    tools: list[dict[str, Any]] | None = None


@message("llmos.model.GetModelInfo")
class GetModelInfo:
    """Ask a model actor for its :class:`ModelInfo`."""


@message("llmos.model.ModelInfo")
class ModelInfo:
    """What a model is and what its chat template renders.

    Attributes:
        model: the model's name.
        context_window: the most tokens (prompt plus generated) one request may use (0:
            not known).
        chat_template: ``messages`` can be given (the model has a chat template).
        tools: the template renders ``Generate.tools`` (its own tool-calling format).
        tool_calls: it renders an assistant message's ``tool_calls``.
        tool_role: it renders ``{"role": "tool", ...}`` messages (tool results).
    """

    model: str
    context_window: int = 0
    chat_template: bool = True
    tools: bool = False
    tool_calls: bool = False
    tool_role: bool = False


@message("llmos.model.Score")
class Score:
    """Ask a model actor how likely each candidate is as the start of its answer.

    A constrained choice: the answer holds one log-probability per candidate, read from the
    model's own distribution, so picking the highest always picks one of the candidates
    (unlike parsing a generated answer). Exactly one of ``messages`` and ``prompt`` is given.

    Attributes:
        candidates: the texts to score (1..64, each a few tokens: names, labels, choices).
        messages: chat turns; the candidates are scored as the opening of the reply.
        prompt: raw text to continue, instead of ``messages``.
        truncate: drop the oldest non-system turns when the prompt is too long.
        requester: who asks: the token ledger charges it the input tokens the scoring read.
            Budgets are of generated tokens and scoring generates none, so a requester over
            its budget can still score.
        dialogue: the dialogue the request serves ("" outside any), for the token ledger.
    """

    candidates: tuple[str, ...]
    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    truncate: bool = True
    requester: str = ""
    dialogue: str = ""


@message("llmos.model.Scores")
class Scores:
    """The answer to :class:`Score`.

    Attributes:
        logprobs: the summed log-probability of each candidate's tokens, in order (<= 0).
        model: the model's name.
        input_tokens: the tokens the model read to score them (the prompt's, plus each
            candidate's but its last, which is scored, not fed), as charged in the ledger.
    """

    logprobs: list[float]
    model: str = ""
    input_tokens: int = 0

    def best(self, candidates: Sequence[str]) -> str:
        """The candidate with the highest log-probability (the first of equals)."""
        if len(candidates) != len(self.logprobs) or not candidates:
            raise ModelError(
                f"{len(self.logprobs)} scores for {len(candidates)} candidates; pass the "
                "candidates that were scored"
            )
        return candidates[max(range(len(candidates)), key=lambda i: self.logprobs[i])]


@message("llmos.model.Tokenize")
class Tokenize:
    """Ask a model actor how its tokenizer splits texts (no generation; answered between
    decoding steps). The answer is a :class:`Tokens`.

    Attributes:
        texts: the texts (at most 16), tokenized as generated text (no special tokens).
    """

    texts: tuple[str, ...]


@message("llmos.model.Tokens")
class Tokens:
    """The answer to :class:`Tokenize`: for each text, its token ids and the text of each
    token (a piece of a multi-byte character may read as a replacement character).

    Attributes:
        ids: the token ids of each text, in order.
        pieces: the decoded text of each of those tokens.
        model: the model's name.
    """

    ids: list[list[int]]
    pieces: list[list[str]]
    model: str = ""


@message("llmos.model.TokenChunk")
class TokenChunk:
    """A piece of generated text, streamed to ``Generate.stream_to`` as it is produced.

    Attributes:
        request_id: the request this chunk belongs to.
        index: 0, 1, 2, ... in order; the chunks concatenate to the completion's text.
        text: the new text.
    """

    request_id: str
    index: int
    text: str


@message("llmos.model.Completion")
class Completion:
    """The answer to a Generate request.

    Attributes:
        text: the generated text (without the prompt, cut before any stop string).
        finish_reason: "stop" (end of turn or a stop string), "length" (max_new_tokens), or
            "cancelled".
        prompt_tokens: tokens in the formatted prompt.
        completion_tokens: tokens generated.
        queue_seconds: time the request waited before its batch started.
        generation_seconds: time its batch spent generating until this request finished.
        model: the model's name.
        request_id: the request's id.
        batch: the sequence number (1, 2, ...) of the batch that served the request.
        batch_size: how many requests shared that batch.
    """

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    queue_seconds: float
    generation_seconds: float
    model: str = ""
    request_id: str = ""
    batch: int = 0
    batch_size: int = 1


@message("llmos.model.GetModelStats")
class GetModelStats:
    """Ask a model actor for its :class:`ModelStats`."""


@message("llmos.model.ModelStats")
class ModelStats:
    """A model actor's counters since it started (cumulative across restarts).

    Attributes:
        model: the model's name.
        requests: Generate requests accepted.
        completed: requests answered with a Completion.
        refused: requests refused (malformed, too long, over budget, expired).
        batches: batches run.
        mean_batch_size: completed requests / batches.
        tokens_generated: completion tokens over all requests.
        generation_seconds: time spent inside batches.
        queued: requests waiting now.
        tokens_by_requester: completion tokens per requester (what the budgets count).
        batch_sizes: completed requests by the size of the batch they ran in (its peak).
        queue_seconds: summed seconds completed requests waited before they joined a batch.
    """

    model: str
    requests: int
    completed: int
    refused: int
    batches: int
    mean_batch_size: float
    tokens_generated: int
    generation_seconds: float
    queued: int
    tokens_by_requester: dict[str, int]
    batch_sizes: dict[int, int] = dataclasses.field(default_factory=dict)
    queue_seconds: float = 0.0


@message("llmos.model.GetLedger")
class GetLedger(Returns[Ledger]):
    """Ask a model actor for its token ledger: a :class:`~llmos.kernel.Ledger` of the tokens
    in and out per agent (requester), per dialogue and per model since it started (kept
    across restarts), with each agent's budget beside its usage."""


@message("llmos.model.Pause")
class Pause:
    """Stop starting new batches (requests keep queueing) until Resume; for maintenance."""


@message("llmos.model.Resume")
class Resume:
    """Start batches again after Pause."""


@message("llmos.model.Cancel")
class Cancel:
    """Cancel a request by its ``request_id``: it leaves the running batch at the next step.

    Its asker gets a :class:`Completion` with finish reason ``"cancelled"`` and the text so far;
    a waiting request is answered the same way without running. Asked, the model actor answers
    True when it knew the request. :class:`ModelStream` sends it when left early.
    """

    request_id: str
