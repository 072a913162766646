"""The trace context that messages carry, as the hot paths see it: at most one check while off.

Every envelope holds a fourth element, the W3C ``traceparent`` of the span it was sent from
(None when tracing is off or no span was current). :data:`state` holds the active
:class:`TraceHook` (None while off): the OpenTelemetry one :mod:`llmos.actors.tracing` installs,
or another installed through :func:`llmos.actors.lowlevel.install_trace_hook` (a run recorder
that stamps every message and sees every delivery). One hook at a time; nothing here imports
OpenTelemetry.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, Protocol

from llmos.actors._errors import LlmosError

__all__ = [
    "TRACEPARENT_LENGTH",
    "TraceHook",
    "handle",
    "install",
    "install_trace_hook",
    "on_switch",
    "outgoing",
    "parse_traceparent",
    "state",
]

TRACEPARENT_LENGTH = 55
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


class TraceHook(Protocol):
    """What the actor core asks of the tracer (implemented in :mod:`llmos.actors.tracing`)."""

    def outgoing(self, message: Any) -> str | None:
        """The traceparent a tell of ``message`` carries now (None: none)."""

    def ask(self, message: Any, target: str, reply: Any) -> str | None:
        """Start the span of an ask (ended when ``reply`` settles); its traceparent."""

    def incoming(self, message: Any) -> str | None:
        """The context a message that came from another node without one carries (None:
        none); called by the transport on the node's I/O thread."""

    def handle(
        self, dispatch: Callable[[Any], Any], message: Any, trace: str, actor: str, asked: bool
    ) -> Any:
        """Run ``dispatch(message)`` inside a span whose parent is ``trace``."""


class _State:
    __slots__ = ("hook",)

    def __init__(self) -> None:
        self.hook: TraceHook | None = None


state = _State()
_install_lock = threading.Lock()
_switches: list[Callable[[bool], None]] = []


def on_switch(fn: Callable[[bool], None]) -> None:
    """Have ``fn(on)`` called whenever tracing is turned on or off (a hot path that trades its
    untraced variant for a traced one, so that while off it makes no check at all)."""
    _switches.append(fn)


def install(hook: TraceHook | None) -> None:
    """Make ``hook`` the active tracer (None: tracing off)."""
    state.hook = hook
    for fn in _switches:
        fn(hook is not None)


def install_trace_hook(hook: TraceHook | None, *, replace: TraceHook | None = None) -> None:
    """Make ``hook`` the active trace hook, or remove it (None).

    While a hook is installed, every tell and ask asks it for the context the message carries
    and every message that carries one is handled through its ``handle``; while none is, a
    tell makes no check at all.

    Args:
        hook: the hook, or None to have none.
        replace: the hook expected in place now (None: none); another one there is an error,
            so two layers never take the slot from each other unawares.

    Raises:
        LlmosError: the hook in place is not ``replace`` (tracing is on, or another
            recorder runs).
    """
    with _install_lock:
        if state.hook is not replace:
            raise LlmosError(
                f"another trace hook is in place ({type(state.hook).__name__}): tracing "
                "and a run recorder take the same slot; turn tracing off (tracing.disable()) "
                "or close the other recorder first"
            )
        install(hook)


def outgoing(message: Any) -> str | None:
    """The traceparent a message sent now carries (None while tracing is off)."""
    hook = state.hook
    return None if hook is None else hook.outgoing(message)


def handle(
    dispatch: Callable[[Any], Any], message: Any, trace: str, actor: str, asked: bool
) -> Any:
    """Handle a message that carries a trace context (in a span, unless tracing went off)."""
    hook = state.hook
    if hook is None:
        return dispatch(message)
    return hook.handle(dispatch, message, trace, actor, asked)


def parse_traceparent(value: Any) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a well-formed W3C traceparent, else None.

    Checks the type and length before anything else, so a hostile value costs nothing to
    refuse; only version 00 with non-zero ids is accepted.
    """
    if type(value) is not str or len(value) != TRACEPARENT_LENGTH:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    trace_id, span_id = int(match[1], 16), int(match[2], 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(match[3], 16)
