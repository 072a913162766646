"""Incremental detokenization with stop strings, one stream per request.

Decoding each new token on its own breaks words and multi-byte characters, and decoding the
whole sequence every step costs O(n) per token. The stream keeps a short window instead (the
approach of vLLM and TGI): it decodes the tokens since the last emitted chunk together with a few
tokens before them, and emits only the new characters, holding back an incomplete UTF-8
character. The chunks it emits concatenate exactly to :attr:`TextStream.text`.

Stop strings are searched in the decoded text; any tail that could still grow into a stop
string is held back, so no chunk ever contains text past (or the start of) a stop string.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["TextStream", "ends_sentence"]

# A sentence ends on . ! ? or an ellipsis, maybe followed by closing quotes or brackets.
_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]]*$")
# Words before a full stop that do not end a sentence.
_ABBREVIATIONS = frozenset("mr mrs ms dr prof st vs etc e.g i.e no fig jr sr inc ltd".split())


def ends_sentence(text: str) -> bool:
    """Does ``text`` end on a sentence boundary (``.``, ``!``, ``?``, ``…``)?

    Closing quotes and brackets may follow the mark, and trailing whitespace is ignored. A full
    stop after a common abbreviation ("Dr.", "e.g.") or a lone digit ("step 3.") does not count.
    """
    text = text.rstrip()
    match = _END.search(text)
    if match is None:
        return False
    at = match.start()
    if text[at] != ".":
        return True
    before = text[:at].split()
    word = before[-1].lstrip("(\"'").lower() if before else ""
    return word not in _ABBREVIATIONS and not (word.isdigit() and len(word) == 1)


# Prompt tokens decoded along with the first generated ones, so that tokenizers which drop a
# leading space at the start of a decode (SentencePiece) still render the first word right.
_CONTEXT_TOKENS = 6


class TextStream:
    """Turns generated token ids into text chunks, stopping at stop strings.

    Args:
        tokenizer: a transformers tokenizer (only ``decode`` is used).
        prompt_ids: the prompt's token ids (only the last few are used, as context).
        stop: stop strings; the text is cut before the first occurrence of any of them.
    """

    def __init__(self, tokenizer: Any, prompt_ids: list[int], stop: tuple[str, ...]) -> None:
        self._tokenizer = tokenizer
        self._ids = list(prompt_ids[-_CONTEXT_TOKENS:])
        self._prefix = 0
        self._read = len(self._ids)
        self._stop = stop
        self._max_stop = max((len(s) for s in stop), default=0)
        self.text = ""
        self._emitted = 0
        self.stopped = False

    def _decode(self, start: int, end: int | None = None) -> str:
        text: str = self._tokenizer.decode(self._ids[start:end], skip_special_tokens=True)
        return text

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text that can be emitted now (maybe "")."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """End the stream; return everything not yet emitted (up to a stop string)."""
        if self.stopped:
            return ""
        chunk = self._advance(final=True)
        if self.stopped:
            return chunk
        rest = self.text[self._emitted :]
        self._emitted = len(self.text)
        return chunk + rest

    def _advance(self, final: bool) -> str:
        prefix_text = self._decode(self._prefix, self._read)
        new_text = self._decode(self._prefix)
        # A trailing U+FFFD is an incomplete multi-byte character: wait for its next bytes,
        # unless the stream is ending (then the model really produced invalid bytes).
        if len(new_text) <= len(prefix_text) or (new_text.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return self._add(new_text[len(prefix_text) :])

    def _add(self, delta: str) -> str:
        search_from = max(0, len(self.text) - self._max_stop + 1)
        self.text += delta
        cut = min(
            (p for p in (self.text.find(s, search_from) for s in self._stop) if p >= 0),
            default=-1,
        )
        if cut >= 0:
            self.text = self.text[:cut]
            self.stopped = True
            end = cut
        else:
            end = len(self.text) - self._held_back()
        chunk = self.text[self._emitted : end] if end > self._emitted else ""
        self._emitted = max(self._emitted, end)
        return chunk

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        for k in range(min(self._max_stop - 1, len(self.text)), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self._stop):
                return k
        return 0
