"""Constrained decoding: a request's tokens kept inside a JSON schema, with xgrammar.

A request with ``json_schema`` gets a :class:`Constraint`: before each of its tokens is chosen,
every token that could not continue a JSON text valid against the schema is masked out of its
logits row (xgrammar compiles the schema into a token-level automaton once, and fills one
bitmask row per step in well under a millisecond). The other rows of the batch are left alone,
so constrained and free requests share one batch.

A small model loops where a schema leaves room to (``"population": 100000000000...``), so two
bounds keep every value finite: the JSON is written compactly (no free whitespace), and a
number that reached ``MAX_NUMBER_CHARS`` characters (ending on a digit) may not take another
number character; a string that reached ``MAX_STRING_CHARS`` is closed at the next token when
the grammar allows it. When a request's token budget is nearly spent (``CLOSE_MARGIN`` tokens
left), what is open is closed: a string at the next closing quote, a number at once, an array
or object at the next ``]`` or ``}`` the grammar allows; so an answer that would otherwise run
out of tokens mid-value still ends as whole JSON (when its schema lets it end there).

Where the grammar leaves no choice (a key's name, the punctuation after it), the forced text is
written in the tokenizer's own tokens (xgrammar's jump-forward string, tokenized): left to
itself a model spells a key it never saw one letter per token, which costs tokens and leads it
off its usual distribution.

xgrammar is imported on first use: a program that never constrains a request does not need it
(``pip install 'llmos[tools]'`` brings it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import torch

from ._engine_params import check_json_schema
from ._errors import ModelError

__all__ = ["CLOSE_MARGIN", "MAX_NUMBER_CHARS", "MAX_STRING_CHARS", "Constraint", "Grammars"]

#: The longest number written under a constraint (sign, digits, point and exponent).
MAX_NUMBER_CHARS = 10
#: The longest string written under a constraint, unless its schema's maxLength is smaller.
MAX_STRING_CHARS = 256
#: Tokens left to a request when its constraint starts closing what is open.
CLOSE_MARGIN = 12
_NUMBER_BYTES = frozenset(b"0123456789.eE+-")


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as exc:
        raise ModelError(
            "constrained decoding (json_schema) needs xgrammar; pip install 'llmos[tools]'"
        ) from exc
    return xgrammar


class Grammars:
    """Compiles schemas for one tokenizer and hands out a :class:`Constraint` per request.

    Compiled schemas are kept (up to ``cache_size``, least recently used first out), so a
    tool set or an answer type compiled once costs nothing for the next request.

    Attributes:
        xgr: the xgrammar module; info: its view of the tokenizer; token_bytes: each token's
            text as bytes.

    Args:
        tokenizer: the model's Hugging Face tokenizer.
        vocab_size: the width of the model's logits (may exceed the tokenizer's vocabulary).
        stop_ids: the tokens that end a request (end of turn): the grammar accepts them once
            the JSON is complete.
        cache_size: how many compiled schemas to keep.
    """

    def __init__(
        self, tokenizer: Any, vocab_size: int, stop_ids: frozenset[int], cache_size: int = 64
    ) -> None:
        xgr = _xgrammar()
        self.xgr = xgr
        self.tokenizer = tokenizer
        self.info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids)
        )
        self._compiler = xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)
        vocab: list[bytes] = list(self.info.decoded_vocab)
        self.token_bytes = vocab + [b""] * (vocab_size - len(vocab))
        # Tokens that would extend a number, and those that start by closing a string.
        self.numeric = torch.tensor([bool(t) and t[0] in _NUMBER_BYTES for t in self.token_bytes])
        self.closing = torch.tensor([t[:1] == b'"' for t in self.token_bytes])
        self.ending = torch.tensor([t[:1] in (b"]", b"}") for t in self.token_bytes])
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._cache_size = cache_size
        # Loaded weights (and so an engine's grammars) may be shared by model actors in one
        # process, each in its own thread.
        self._lock = threading.Lock()

    def compile(self, schema: str) -> Any:
        """The compiled grammar of a schema (cached).

        Raises:
            ModelError: the schema is not valid JSON or xgrammar cannot compile it.
        """
        check_json_schema(schema)
        with self._lock:
            compiled = self._cache.get(schema)
            if compiled is not None:
                self._cache.move_to_end(schema)
                return compiled
        try:
            compiled = self._compiler.compile_json_schema(
                schema, any_whitespace=False, strict_mode=True
            )
        except Exception as exc:
            raise ModelError(
                f"the json_schema could not be compiled ({type(exc).__name__}: {exc}); "
                "simplify it (plain objects, arrays, strings, numbers, enums)"
            ) from exc
        with self._lock:
            self._cache[schema] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled

    def constraint(self, schema: str, budget: int = 1 << 30) -> Constraint:
        """A fresh constraint for one request (a matcher at the start of the schema) that
        may generate ``budget`` tokens."""
        return Constraint(self, self.xgr.GrammarMatcher(self.compile(schema)), budget)


class Constraint:
    """Keeps one request's tokens inside its grammar (made by :meth:`Grammars.constraint`)."""

    def __init__(self, grammars: Grammars, matcher: Any, budget: int = 1 << 30) -> None:
        self._grammars = grammars
        self._xgr = grammars.xgr
        self._matcher = matcher
        self._bitmask = self._xgr.allocate_token_bitmask(1, grammars.info.vocab_size)
        # Where the text stands: inside a string (and how long), or a number's length.
        self._in_string = False
        self._escaped = False
        self._run = 0
        self._last = 0
        self._forced: list[int] = []
        self._left = budget

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Return a copy of a 1-D logits row with every token the grammar forbids at -inf
        (and the tokens that would stretch a number or a string past its bound)."""
        self._matcher.fill_next_token_bitmask(self._bitmask, 0)
        row = logits.unsqueeze(0).clone()
        self._xgr.apply_token_bitmask_inplace(row, self._bitmask.to(row.device))
        out = row[0]
        g = self._grammars
        forced = self._next_forced()
        if forced is not None and bool(torch.isfinite(out[forced])):
            only = torch.full_like(out, float("-inf"))
            only[forced] = out[forced]
            return only
        closing = self._left <= CLOSE_MARGIN
        number = not self._in_string and self._run > 0 and chr(self._last).isdigit()
        if self._in_string and (closing or self._run >= MAX_STRING_CHARS):
            bounded = out.masked_fill(~g.closing.to(out.device), float("-inf"))
        elif number and (closing or self._run >= MAX_NUMBER_CHARS):
            bounded = out.masked_fill(g.numeric.to(out.device), float("-inf"))
        elif closing and not self._in_string:
            bounded = out.masked_fill(~g.ending.to(out.device), float("-inf"))
        else:
            return out
        # Never leave no token at all (a pattern the bound cannot close): the grammar wins.
        return bounded if bool(torch.isfinite(bounded).any()) else out

    def _next_forced(self) -> int | None:
        """The next token of the text the grammar forces here, in the tokenizer's own tokens."""
        if not self._forced:
            text = self._matcher.find_jump_forward_string()
            if not text:
                return None
            ids = self._grammars.tokenizer(text, add_special_tokens=False)["input_ids"]
            # The last token may merge with what the model writes next: leave it to the model.
            self._forced = list(ids[:-1]) if len(ids) > 1 else list(ids)
            if not self._forced:
                return None
        return self._forced[0]

    def accept(self, token: int) -> bool:
        """Advance past a chosen token; False when the grammar does not allow it."""
        self._left -= 1
        if self._forced:
            self._forced = self._forced[1:] if token == self._forced[0] else []
        if not self._matcher.accept_token(token):
            return False
        for byte in self._grammars.token_bytes[token]:
            self._track(byte)
        return True

    def _track(self, byte: int) -> None:
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif byte == 0x5C:  # backslash
                self._escaped = True
            elif byte == 0x22:  # the closing quote
                self._in_string, self._run = False, 0
                return
            self._run += 1
        elif byte == 0x22:
            self._in_string, self._run = True, 0
        elif byte in _NUMBER_BYTES:
            self._run += 1
        else:
            self._run = 0
        self._last = byte

    @property
    def complete(self) -> bool:
        """True once the text is a whole value of the schema (only a stop token may follow)."""
        return bool(self._matcher.is_terminated())
