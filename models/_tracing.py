"""GenAI spans of model requests (OpenTelemetry's semantic conventions for generative AI).

One span per Generate, from its arrival at the model actor to its answer, child of the span
that handled it (so of the agent's ask, on whichever node the agent runs); one per Score too,
with the operation name "score" (the conventions name no scoring operation, and allow a
custom one). Attributes follow the GenAI conventions (``gen_ai.*``); what they do not name is
under ``llmos.model.*``. While tracing is off every function here returns at once.
"""

from __future__ import annotations

from typing import Any

from llmos.actors import tracing

__all__ = ["end_model_span", "end_score_span", "start_model_span", "start_score_span"]


def start_model_span(request: Any, model: str, request_id: str) -> Any:
    """Open the span of one request (None while tracing is off)."""
    if not tracing.enabled():
        return None
    operation = "chat" if request.messages is not None else "text_completion"
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "llmos",
        "gen_ai.request.model": model,
        "gen_ai.request.id": request_id,
    }
    for key, value in (
        ("gen_ai.request.max_tokens", request.max_new_tokens),
        ("gen_ai.request.temperature", request.temperature),
        ("gen_ai.request.top_p", request.top_p),
        ("gen_ai.request.seed", request.seed),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[key] = value
    _add_parties(attributes, request)
    return tracing.start_span(f"{operation} {model}", attributes, kind="internal")


def _add_parties(attributes: dict[str, Any], request: Any) -> None:
    if isinstance(request.requester, str) and request.requester:
        attributes["gen_ai.agent.name"] = request.requester
    if isinstance(request.dialogue, str) and request.dialogue:
        attributes["gen_ai.conversation.id"] = request.dialogue


def start_score_span(request: Any, model: str) -> Any:
    """Open the span of one Score (None while tracing is off)."""
    if not tracing.enabled():
        return None
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "score",
        "gen_ai.provider.name": "llmos",
        "gen_ai.request.model": model,
    }
    if isinstance(request.candidates, list | tuple):
        attributes["llmos.model.candidates"] = len(request.candidates)
    _add_parties(attributes, request)
    return tracing.start_span(f"score {model}", attributes, kind="internal")


def end_score_span(span: Any, scores: Any = None, error: BaseException | None = None) -> None:
    """Close a Score's span with the input tokens it read (no output), or with its error."""
    if span is None:
        return
    if scores is not None:
        span.set_attributes(
            {
                "gen_ai.response.model": scores.model,
                "gen_ai.usage.input_tokens": scores.input_tokens,
                "gen_ai.usage.output_tokens": 0,
            }
        )
    tracing.end_span(span, error)


def end_model_span(span: Any, completion: Any = None, error: BaseException | None = None) -> None:
    """Close a request's span with its usage and finish reason, or with its error."""
    if span is None:
        return
    if completion is not None:
        span.set_attributes(
            {
                "gen_ai.response.model": completion.model,
                "gen_ai.response.id": completion.request_id,
                "gen_ai.response.finish_reasons": [completion.finish_reason],
                "gen_ai.usage.input_tokens": completion.prompt_tokens,
                "gen_ai.usage.output_tokens": completion.completion_tokens,
                "llmos.model.batch": completion.batch,
                "llmos.model.batch_size": completion.batch_size,
                "llmos.model.queue_seconds": completion.queue_seconds,
                "llmos.model.generation_seconds": completion.generation_seconds,
            }
        )
    tracing.end_span(span, error)
