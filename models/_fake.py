"""FakeModel: a deterministic stand-in for a model actor, for tests and model-free examples.

It answers :class:`~llmos.models.Generate` exactly the way a ModelActor does (a
:class:`~llmos.models.Completion`, TokenChunks to ``stream_to``), but its text comes from a
script, a function, or a short echo of the last user turn. Tokens are whitespace-separated
words, so token limits and budgets behave predictably.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

from llmos.actors import Actor, ActorDeadError, handler
from llmos.kernel import Ledger, TokenLedger

from ._engine_text import ends_sentence
from ._errors import ModelError
from ._messages import (
    Cancel,
    Completion,
    Generate,
    GetLedger,
    GetModelInfo,
    GetModelStats,
    ModelInfo,
    ModelStats,
    Score,
    Scores,
    TokenChunk,
    Tokenize,
    Tokens,
)
from ._sched import check_prompt_size, check_tokenize
from ._tracing import end_model_span, end_score_span, start_model_span, start_score_span

__all__ = ["FakeModel", "count_words"]

log = logging.getLogger("llmos.models")

Script = Sequence[str] | Callable[[list[dict[str, Any]]], str]
_ids = itertools.count(1)
_PREFIX = re.compile(r"^(?:\S+ #\d+: |\S+: )+")  # "name: " and "name #3: " from earlier turns


def count_words(text: str) -> int:
    """The fake model's token count: whitespace-separated words."""
    return len(text.split())


class FakeModel(Actor):
    """A deterministic model actor that answers Generate without any model.

    Args:
        script: the replies, in order (one per request, across all requesters), or a function
            of the chat messages that returns the reply. When a list runs out the fake echoes.
        cycle: start the list again from the top instead of echoing when it runs out.
        name_tag: the ``model`` name put in completions.
        delay: seconds to wait before answering each request (to look like a slow model).
        max_prompt_bytes: requests with a longer prompt text are refused with
            :class:`PromptTooLarge`, as a ModelActor refuses them.
        tool_template: act as a model whose chat template renders tools, tool calls and
            tool messages (:class:`ModelInfo`); without it, a request with ``tools`` is
            refused, as a ModelActor whose template has no tool support refuses it.

    Without a script each reply is ``"<requester> #<n>: <first 12 words of the last user
    line>"`` (speaker prefixes dropped), with ``n`` counted per requester, so a dialogue
    between fake-backed agents is reproducible.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        cycle: bool = False,
        name_tag: str = "fake",
        delay: float = 0.0,
        max_prompt_bytes: int | None = 1 << 17,
        tool_template: bool = False,
    ) -> None:
        super().__init__()
        if script is not None and not callable(script) and not isinstance(script, Sequence):
            raise ModelError(
                f"FakeModel script must be a list of str or a function, got {script!r}"
            )
        self.script = script
        self.cycle = cycle
        self.name_tag = name_tag
        self.delay = delay
        self.max_prompt_bytes = max_prompt_bytes
        self.tool_template = tool_template
        self.position = 0
        self.per_requester: dict[str, int] = {}
        self.counts = {"requests": 0, "completed": 0, "refused": 0, "tokens": 0}
        self.tokens_by_requester: dict[str, int] = {}
        self.prompts: list[list[dict[str, Any]]] = []
        self.ledger = TokenLedger(register=True)

    def on_stop(self) -> None:
        self.ledger.close()

    @handler(Generate)
    def generate(self, request: Generate) -> Completion | None:
        """Answer at once with a Completion (and stream it if asked).

        A refused request raises to its asker; told (with a ``stream_to``), it is logged
        instead, as a ModelActor does, so bad input sent with tell never fails the fake.
        """
        self.counts["requests"] += 1
        try:
            messages = self._check(request)
        except ModelError as exc:
            self.counts["refused"] += 1
            if self.actor_asked:
                raise
            log.warning("told Generate %r refused: %s", request.request_id, exc)
            return None
        request_id = request.request_id or f"fake-{next(_ids)}"
        span = start_model_span(request, self.name_tag, request_id)
        if self.delay > 0:
            time.sleep(self.delay)
        self.prompts.append(messages)
        text, finish = self._cut(self._reply(messages, request.requester), request)
        tokens = count_words(text)
        completion = Completion(
            text=text,
            finish_reason=finish,
            prompt_tokens=sum(count_words(str(m.get("content", ""))) for m in messages),
            completion_tokens=tokens,
            queue_seconds=0.0,
            generation_seconds=0.0,
            model=self.name_tag,
            request_id=request_id,
        )
        who = request.requester or "anonymous"
        dialogue = request.dialogue if isinstance(request.dialogue, str) else ""
        # The ledger first: a scrape that sees the request completed sees its tokens charged.
        self.ledger.charge(who, dialogue, self.name_tag, completion.prompt_tokens, tokens)
        self.tokens_by_requester[who] = self.tokens_by_requester.get(who, 0) + tokens
        self.counts["tokens"] += tokens
        self.counts["completed"] += 1
        end_model_span(span, completion)
        if request.stream_to is not None:
            try:
                for i, word in enumerate(text.split(" ")):
                    piece = word if i == 0 else " " + word
                    request.stream_to.tell(TokenChunk(request_id, i, piece))
                request.stream_to.tell(completion)
            except ActorDeadError:
                pass  # the stream target is gone; the asker still gets the answer
            except Exception as exc:  # what the target raised fails this request only
                raise ModelError(
                    f"request {request_id}: its stream target {request.stream_to!r} failed "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
        return completion

    def _check(self, request: Generate) -> list[dict[str, Any]]:
        """The request's chat messages, once it passed the checks a ModelActor makes."""
        if not self.actor_asked and request.stream_to is None:
            raise ModelError(
                "Generate was sent with tell and no stream_to: nobody would get the answer; "
                "use ask, or name a stream_to ref"
            )
        check_prompt_size(request, self.max_prompt_bytes)
        messages = self._messages(request)
        if request.tools is not None and not self.tool_template:
            raise ModelError(
                f"the chat template of {self.name_tag} does not render tools (ModelInfo says "
                "what it renders); describe the tools in the prompt"
            )
        if not isinstance(request.max_new_tokens, int) or request.max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be an int >= 1, got {request.max_new_tokens!r}")
        return messages

    @handler(Tokenize)
    def tokenize(self, request: Tokenize) -> Tokens:
        """The fake's tokens are whitespace-separated words; a word's id is its CRC-32."""
        words = [t.split() for t in check_tokenize(request, self.max_prompt_bytes)]
        ids = [[zlib.crc32(w.encode()) for w in ws] for ws in words]
        return Tokens(ids, words, self.name_tag)

    @handler(Cancel)
    def cancel(self, _msg: Cancel) -> bool:
        """The fake answers at once, so nothing is ever left to cancel: False."""
        return False

    @handler(GetModelStats)
    def stats(self, _msg: GetModelStats) -> ModelStats:
        """Counters, in the same shape as a ModelActor's."""
        c = self.counts
        return ModelStats(
            model=self.name_tag,
            requests=c["requests"],
            completed=c["completed"],
            refused=c["refused"],
            batches=c["completed"],
            mean_batch_size=1.0 if c["completed"] else 0.0,
            tokens_generated=c["tokens"],
            generation_seconds=0.0,
            queued=0,
            tokens_by_requester=dict(self.tokens_by_requester),
            batch_sizes={1: c["completed"]} if c["completed"] else {},
        )

    @handler(GetModelInfo)
    def info(self, _msg: GetModelInfo) -> ModelInfo:
        """What a model with (``tool_template``) or without tool support answers."""
        t = self.tool_template
        return ModelInfo(self.name_tag, 0, True, t, t, t)

    @handler(GetLedger)
    def get_ledger(self, _msg: GetLedger) -> Ledger:
        """Tokens in and out per agent, dialogue and model, as a ModelActor keeps them."""
        return self.ledger.snapshot()

    def _messages(self, request: Generate | Score) -> list[dict[str, Any]]:
        if (request.messages is None) == (request.prompt is None):
            raise ModelError(f"{type(request).__name__} needs exactly one of messages or prompt")
        if request.prompt is not None:
            return [{"role": "user", "content": request.prompt}]
        assert request.messages is not None
        return [dict(m) for m in request.messages]

    def _reply(self, messages: list[dict[str, Any]], requester: str) -> str:
        script = self.script
        if callable(script):
            return str(script(messages))
        if script is not None and len(script) > 0:
            if self.position < len(script) or self.cycle:
                text = script[self.position % len(script)]
                self.position += 1
                return str(text)
        who = requester or "fake"
        n = self.per_requester[who] = self.per_requester.get(who, 0) + 1
        last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
        content = str(last.get("content", "")) if last else ""
        lines = [ln for ln in content.splitlines() if ln.strip()]
        words = _PREFIX.sub("", lines[-1] if lines else "").split()
        return f"{who} #{n}: {' '.join(words[:12])}".rstrip()

    @staticmethod
    def _cut(text: str, request: Generate) -> tuple[str, str]:
        finish = "stop"
        for stop in request.stop:
            at = text.find(stop)
            if stop and at >= 0:
                text = text[:at]
        words = text.split(" ")
        if count_words(text) > request.max_new_tokens:
            kept: list[str] = []
            # Like the engine: past max_new_tokens, up to finish_sentence more words end the
            # sentence under way.
            extra = request.finish_sentence if isinstance(request.finish_sentence, int) else 0
            for word in words:
                over = count_words(" ".join([*kept, word])) - request.max_new_tokens
                if over > 0 and (over > extra or ends_sentence(" ".join(kept))):
                    break
                kept.append(word)
            text, finish = " ".join(kept), "length"
        return text, finish

    @handler(Score)
    def score(self, request: Score) -> Scores:
        """Score candidates from the reply the fake would give: the candidates it names come
        first (earliest mention best), the others follow in their order. So a script of
        names picks those names, and a reply naming none picks the first candidate. The
        words read are charged to the requester as input tokens, as a ModelActor does."""
        messages = self._messages(request)
        candidates = list(request.candidates)
        if not candidates or not all(isinstance(c, str) and c for c in candidates):
            raise ModelError(f"candidates must be non-empty strings, got {candidates!r}")
        span = start_score_span(request, self.name_tag)
        reply = self._reply(messages, request.requester).lower()
        found = [reply.find(c.lower()) for c in candidates]
        order = sorted(range(len(candidates)), key=lambda i: (found[i] < 0, found[i]))
        logprobs = [0.0] * len(candidates)
        for rank, i in enumerate(order):
            logprobs[i] = -float(rank)
        # Read as a ModelActor reads them: the prompt, and each candidate but its last word.
        read = sum(count_words(str(m.get("content", ""))) for m in messages)
        read += sum(max(count_words(c) - 1, 0) for c in candidates)
        dialogue = request.dialogue if isinstance(request.dialogue, str) else ""
        self.ledger.charge(request.requester, dialogue, self.name_tag, read, 0)
        scores = Scores(logprobs=logprobs, model=self.name_tag, input_tokens=read)
        end_score_span(span, scores)
        return scores
