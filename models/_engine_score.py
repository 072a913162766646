"""Scoring candidates: the model's log-probability of each candidate text right after a prompt.

A constrained choice (which of these names comes next?) read from the model's own distribution
instead of from free text: the caller takes the most likely candidate, so its answer is always
one of them. The prompt runs once; its KV cache is copied for every candidate, and the
candidates' tokens run together in one more forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ._engine_batch import EngineParts
from ._engine_load import _is_oom
from ._engine_params import ModelOutOfMemory
from ._errors import ModelError

__all__ = ["MAX_CANDIDATES", "score_candidates"]

#: The most candidates one scoring request may hold.
MAX_CANDIDATES = 64
#: The most tokens one candidate may take.
MAX_CANDIDATE_TOKENS = 32


def _candidate_ids(engine: EngineParts, candidates: Sequence[str]) -> list[list[int]]:
    if not candidates or len(candidates) > MAX_CANDIDATES:
        raise ModelError(
            f"a scoring request needs 1..{MAX_CANDIDATES} candidates, got {len(candidates)}"
        )
    out: list[list[int]] = []
    for i, text in enumerate(candidates):
        if not isinstance(text, str) or not text:
            raise ModelError(f"candidate {i} must be a non-empty str, got {text!r}")
        ids: list[int] = engine.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids or len(ids) > MAX_CANDIDATE_TOKENS:
            raise ModelError(
                f"candidate {i} ({text[:40]!r}) encodes to {len(ids)} tokens; use 1.."
                f"{MAX_CANDIDATE_TOKENS}"
            )
        out.append(ids)
    return out


def score_candidates(
    engine: EngineParts, prompt_ids: list[int], candidates: Sequence[str]
) -> tuple[list[float], int]:
    """The summed log-probability of each candidate's tokens right after ``prompt_ids``, and
    the input tokens the forward passes read.

    Args:
        engine: the engine whose model scores.
        prompt_ids: the prompt, tokenized (e.g. a chat with the assistant turn opened).
        candidates: the texts to score (1..``MAX_CANDIDATES``, each 1..32 tokens).

    Returns:
        One log-probability (<= 0) per candidate, in order; and the tokens fed to the model:
        the prompt's, plus each candidate's but its last (which is scored, never fed).

    Raises:
        ModelError: a bad candidate, or the model failed a forward pass.
        ModelOutOfMemory: the device ran out of memory.
    """
    from transformers import DynamicCache

    ids = _candidate_ids(engine, candidates)
    if len(prompt_ids) + max(map(len, ids)) > engine.context_window:
        raise ModelError(
            f"the prompt ({len(prompt_ids)} tokens) and the longest candidate do not fit the "
            f"context window of {engine.context_window} tokens of {engine.loaded.name}; "
            "shorten the prompt"
        )
    device = engine.loaded.device
    model = engine.loaded.model
    n, width, start = len(ids), max(map(len, ids)), len(prompt_ids)
    fed = start + sum(len(c) - 1 for c in ids)
    try:
        with torch.inference_mode():
            cache = DynamicCache()
            prompt = torch.tensor([prompt_ids], dtype=torch.long, device=device)
            out = model(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                use_cache=True,
                **{engine._cache_kw: cache},
                **engine._logits_kw,
            )
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            scores = [float(first[c[0]]) for c in ids]
            if width == 1:
                return scores, fed
            # Each row feeds its candidate's tokens but the last; the logits after token j
            # score token j + 1. Rows are padded on the right, so padding never precedes a
            # real token.
            cache.batch_repeat_interleave(n)
            feed = torch.full((n, width - 1), engine._pad_id, dtype=torch.long)
            mask = torch.zeros((n, start + width - 1), dtype=torch.long)
            mask[:, :start] = 1
            for b, c in enumerate(ids):
                feed[b, : len(c) - 1] = torch.tensor(c[:-1])
                mask[b, start : start + len(c) - 1] = 1
            positions = torch.arange(start, start + width - 1).expand(n, -1)
            out = model(
                input_ids=feed.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                use_cache=True,
                **{engine._cache_kw: cache},
            )
            logp = torch.log_softmax(out.logits.float(), dim=-1)
            for b, c in enumerate(ids):
                for j in range(1, len(c)):
                    scores[b] += float(logp[b, j - 1, c[j]])
            return scores, fed
    except ModelError:
        raise
    except Exception as exc:
        if _is_oom(exc):
            raise ModelOutOfMemory(
                f"out of memory scoring {n} candidates after {start} prompt tokens: {exc}; "
                "score fewer candidates or a shorter prompt"
            ) from exc
        raise ModelError(
            f"model {engine.loaded.name} failed to score {n} candidates: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
