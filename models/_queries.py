"""The model actor's side requests, answered at once between decoding steps: Score and Tokenize.

Neither joins the running batch nor counts in the generation statistics. A Score runs forward
passes over its prompt and candidates, so the tokens it read are charged to its requester (and
dialogue) in the token ledger, with no output tokens, and it gets a GenAI span of its own. It
is not refused over a budget: budgets are of generated tokens, and scoring generates none.
"""

from __future__ import annotations

from llmos.kernel import TokenLedger

from ._engine import GenerateParams, ModelEngine
from ._errors import ModelError
from ._messages import Score, Scores, Tokenize, Tokens
from ._sched import check_prompt_size, check_tokenize
from ._tracing import end_score_span, start_score_span

__all__ = ["answer_score", "answer_tokenize", "loaded"]


def loaded(engine: ModelEngine | None) -> ModelEngine:
    """The engine, once the model is loaded.

    Raises:
        ModelError: it is not loaded yet.
    """
    if engine is None:
        raise ModelError("the model is not loaded yet; ask again once the actor started")
    return engine


def answer_score(
    engine: ModelEngine | None, request: Score, cap: int | None, ledger: TokenLedger
) -> Scores:
    """Score the candidates and charge the tokens read to the requester.

    Raises:
        ModelError: not loaded yet, a malformed request, a prompt that does not fit, or a bad
            candidate (nothing is charged then).
    """
    engine = loaded(engine)
    model = engine.loaded.name
    span = start_score_span(request, model)
    try:
        check_prompt_size(request, cap)
        params = GenerateParams(
            messages=request.messages,
            prompt=request.prompt,
            max_new_tokens=1,
            truncate=request.truncate,
        )
        candidates = request.candidates
        if isinstance(candidates, str) or not isinstance(candidates, list | tuple):
            raise ModelError(f"candidates must be a list of str, got {candidates!r}")
        logprobs, read = engine.score_counted(params, list(candidates))
    except BaseException as exc:
        end_score_span(span, error=exc)
        raise
    requester = request.requester if isinstance(request.requester, str) else ""
    dialogue = request.dialogue if isinstance(request.dialogue, str) else ""
    ledger.charge(requester, dialogue, model, read, 0)
    scores = Scores(logprobs=logprobs, model=model, input_tokens=read)
    end_score_span(span, scores)
    return scores


def answer_tokenize(engine: ModelEngine | None, request: Tokenize, cap: int | None) -> Tokens:
    """Tokenize texts with the model's tokenizer.

    Raises:
        ModelError: not loaded yet, or a malformed request.
    """
    engine = loaded(engine)
    split = [engine.tokenize(t) for t in check_tokenize(request, cap)]
    return Tokens([i for i, _ in split], [p for _, p in split], engine.loaded.name)
