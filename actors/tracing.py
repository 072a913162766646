"""llmos.actors.tracing: OpenTelemetry traces that follow messages across actors and nodes.

Off by default. Once enabled, every ask is a span (``ask <Message>``, ended when its reply
settles), every message sent from inside a span carries that span's W3C ``traceparent`` (in the
local envelope, and in the llmos frame to another node), and the actor that handles it does so
in a child span (``handle <Message>``). A dialogue turn is one trace: the chat's span of the
turn (``turn <n> <speaker>``, whose trace id the transcript entry keeps), its ask of the turn,
the agent handling it, its ask of the model (on any node), the model's GenAI span.
Messages declared ``local_only`` (a process's own bookkeeping) carry no context and start no
span.

Turn it on in code::

    from llmos.actors import tracing
    tracing.enable("otlp")            # or "console", "jsonl:/tmp/spans.jsonl", an exporter

or for ``llmos`` commands with the environment: ``LLMOS_TRACING=otlp`` (or ``console``,
``jsonl:PATH``) plus OpenTelemetry's own variables for the exporter
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``). Needs the ``llmos[otel]`` extra;
nothing here imports OpenTelemetry until :func:`enable` runs. While tracing is off a local
tell makes no tracing check at all (its traced variant takes its place only while on), and an
ask or a send to another node makes one attribute check.

A trace context from a peer is checked (type, length, W3C format) before use and serves
tracing only: a malformed one is dropped (and counted by the node), the message is delivered
all the same. A peer's sampled flag is honoured (parent-based sampling).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmos.actors._errors import LlmosError
from llmos.actors._trace import install, parse_traceparent, state

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

__all__ = [
    "ENV_VAR",
    "check_traceparent",
    "current_traceparent",
    "disable",
    "enable",
    "enable_from_env",
    "enabled",
    "end_span",
    "jsonl_exporter",
    "set_attributes",
    "span_record",
    "start_span",
    "trace_id",
    "use_span",
]

ENV_VAR = "LLMOS_TRACING"
"""The environment variable :func:`enable_from_env` reads: ``otlp``, ``console`` or
``jsonl:PATH`` (empty, ``0`` or ``off``: tracing stays off)."""

_lock = threading.Lock()
_owned: list[Any] = []  # the provider enable() made (shut down by disable())


def _wire_name(message: Any) -> str:
    cls = type(message)
    return str(getattr(cls, "__llmos_wire_name__", cls.__name__))


def _format(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


class _OtelHook:
    """The :class:`~llmos.actors._trace.TraceHook` on an OpenTelemetry tracer."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace

        self.tracer = tracer
        self.trace = trace
        self.context = context
        self.client = trace.SpanKind.CLIENT
        self.server = trace.SpanKind.SERVER
        self.consumer = trace.SpanKind.CONSUMER
        self.error = trace.StatusCode.ERROR

    def _current(self) -> str | None:
        ctx = self.trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return _format(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))

    def outgoing(self, message: Any) -> str | None:
        if getattr(type(message), "__llmos_local_only__", False):
            return None
        return self._current()

    def ask(self, message: Any, target: str, reply: Any) -> str | None:
        if getattr(type(message), "__llmos_local_only__", False):
            return None
        name = _wire_name(message)
        span = self.tracer.start_span(
            f"ask {name}",
            kind=self.client,
            attributes={"llmos.actor": target, "llmos.message": name},
        )
        reply.add_done_callback(lambda settled: self._end_ask(span, settled))
        ctx = span.get_span_context()
        return _format(ctx.trace_id, ctx.span_id, int(ctx.trace_flags))

    def incoming(self, message: Any) -> str | None:
        return None  # a peer that sent no context: the message starts no span

    def _end_ask(self, span: Any, reply: Any) -> None:
        error = reply.exception()
        if error is not None:
            span.set_status(self.error, f"{type(error).__name__}: {error}"[:200])
            span.set_attribute("error.type", type(error).__name__)
        span.end()

    def handle(
        self, dispatch: Callable[[Any], Any], message: Any, trace: str, actor: str, asked: bool
    ) -> Any:
        parsed = parse_traceparent(trace)
        if parsed is None:
            return dispatch(message)
        trace_id, span_id, flags = parsed
        otel = self.trace
        parent = otel.set_span_in_context(
            otel.NonRecordingSpan(
                otel.SpanContext(
                    trace_id, span_id, is_remote=True, trace_flags=otel.TraceFlags(flags & 0xFF)
                )
            )
        )
        name = _wire_name(message)
        with self.tracer.start_as_current_span(
            f"handle {name}",
            context=parent,
            kind=self.server if asked else self.consumer,
            attributes={"llmos.actor": actor, "llmos.message": name},
        ):
            return dispatch(message)


def enable(
    exporter: str | SpanExporter | None = None,
    *,
    provider: TracerProvider | None = None,
    service_name: str | None = None,
) -> TracerProvider:
    """Turn tracing on for this process.

    Args:
        exporter: where spans go: ``"otlp"`` (OTLP over HTTP, configured by the
            ``OTEL_EXPORTER_OTLP_*`` variables; batched), ``"console"`` (printed to stdout),
            ``"jsonl:PATH"`` (one JSON object per span appended to PATH), or any
            OpenTelemetry ``SpanExporter`` (an ``InMemorySpanExporter`` in tests). None:
            ``"otlp"``, unless ``provider`` is given (then its own processors decide).
        provider: an SDK ``TracerProvider`` to record into (your application's); default: a
            new one owned by llmos (shut down by :func:`disable`).
        service_name: the ``service.name`` of a new provider (default: ``OTEL_SERVICE_NAME``,
            else ``"llmos"``).

    Returns:
        The provider spans are recorded with.

    Raises:
        LlmosError: OpenTelemetry is not installed (``pip install 'llmos[otel]'``), the
            exporter is not one of the above, or a run recorder
            (:func:`llmos.agents.record_actors`) holds the trace hook.
    """
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise LlmosError(
            "tracing needs OpenTelemetry: pip install 'llmos[otel]' (opentelemetry-api, "
            "opentelemetry-sdk and the OTLP exporter)"
        ) from exc
    with _lock:
        if state.hook is not None and not isinstance(state.hook, _OtelHook):
            raise LlmosError(
                f"a run recorder ({type(state.hook).__name__}) holds the trace hook; close it "
                "before turning tracing on"
            )
        _shutdown_owned()
        if provider is None:
            name = service_name or os.environ.get("OTEL_SERVICE_NAME") or "llmos"
            provider = TracerProvider(
                resource=Resource.create({"service.name": name, "process.pid": os.getpid()})
            )
            _owned.append(provider)
            if exporter is None:
                exporter = "otlp"
        if exporter is not None:
            made = _exporter(exporter)
            batched = exporter == "otlp"
            processor = BatchSpanProcessor(made) if batched else SimpleSpanProcessor(made)
            provider.add_span_processor(processor)
        install(_OtelHook(provider.get_tracer("llmos")))
    return provider


def _exporter(spec: str | SpanExporter) -> SpanExporter:
    if not isinstance(spec, str):
        return spec
    if spec == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise LlmosError(
                "the OTLP exporter is not installed: pip install 'llmos[otel]'"
            ) from exc
        return OTLPSpanExporter()
    if spec == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if spec.startswith("jsonl:") and len(spec) > len("jsonl:"):
        return jsonl_exporter(spec[len("jsonl:") :])
    raise LlmosError(
        f"unknown trace exporter {spec!r}: use 'otlp', 'console', 'jsonl:PATH' or a SpanExporter"
    )


def _shutdown_owned() -> None:
    while _owned:
        _owned.pop().shutdown()  # flushes what is batched


def disable() -> None:
    """Turn tracing off; a provider :func:`enable` made is flushed and shut down."""
    with _lock:
        if state.hook is None or isinstance(state.hook, _OtelHook):
            install(None)
        _shutdown_owned()


def enabled() -> bool:
    """True while tracing is on (a run recorder holding the trace hook is not tracing)."""
    hook = state.hook  # the None test first: while off, one check as before
    return hook is not None and isinstance(hook, _OtelHook)


def enable_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Enable tracing as ``LLMOS_TRACING`` says (see :data:`ENV_VAR`); True if it did.

    Raises:
        LlmosError: the variable names no known exporter, or OpenTelemetry is missing.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if value.lower() in ("", "0", "off", "false", "no"):
        return False
    enable(value)
    return True


def check_traceparent(value: Any) -> str | None:
    """``value`` if it is a well-formed W3C traceparent (version 00, non-zero ids), else None.

    What a transport calls on a trace context from a peer before letting it near an actor.
    """
    return value if parse_traceparent(value) is not None else None


def current_traceparent() -> str | None:
    """The traceparent of the span current in this thread or task (None: none, or off)."""
    hook = state.hook
    return hook.outgoing(None) if isinstance(hook, _OtelHook) else None


def start_span(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "internal"
) -> Span | None:
    """Start a span, child of the current one, that the caller ends (None while off).

    For work that outlives a handler (a model request answered steps later). ``kind`` is
    "internal", "client", "server", "producer" or "consumer".
    """
    hook = state.hook
    if not isinstance(hook, _OtelHook):
        return None
    span: Span = hook.tracer.start_span(
        name, kind=hook.trace.SpanKind[kind.upper()], attributes=dict(attributes or {})
    )
    return span


@contextlib.contextmanager
def use_span(span: Span | None) -> Iterator[None]:
    """Make ``span`` current inside the block (messages sent there carry its context); a
    None span (tracing off) changes nothing. The span is not ended on leaving."""
    if span is None:
        yield
        return
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=False):
        yield


def end_span(span: Span | None, error: BaseException | None = None) -> None:
    """End a span from :func:`start_span`, marked failed when ``error`` is given."""
    if span is None:
        return
    if error is not None:
        from opentelemetry.trace import StatusCode

        span.set_attribute("error.type", type(error).__name__)
        span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:200])
    span.end()


def trace_id(span: Span | None) -> str:
    """The trace id of ``span`` as 32 hex digits ("" for None): what a collector shows."""
    if span is None:
        return ""
    return f"{span.get_span_context().trace_id:032x}"


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Set attributes on the current span (nothing while off or outside a span)."""
    hook = state.hook
    if hook is None or not isinstance(hook, _OtelHook):
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(dict(attributes))


def jsonl_exporter(path: str | os.PathLike[str]) -> SpanExporter:
    """An exporter that appends one JSON object per span to ``path`` (offline; for collecting
    the spans of several processes: each writes its own file)."""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    target = Path(path)

    class JsonLinesExporter(SpanExporter):
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = [json.dumps(span_record(s), default=str) + "\n" for s in spans]
            with self._lock, target.open("a", encoding="utf-8") as out:
                out.writelines(lines)
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    return JsonLinesExporter()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as plain JSON data (ids as hex, as in a traceparent)."""
    ctx = span.context
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_id": f"{parent.span_id:016x}" if parent else "",
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "pid": (span.resource.attributes.get("process.pid") if span.resource else None),
    }
