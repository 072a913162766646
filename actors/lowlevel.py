"""llmos.actors.lowlevel: the core's parts for layers built on it, not needed to write actors.

What each layer above uses (all documented, all stable like the rest of the public API):

- a supervisor (``llmos.kernel``) builds and drives :class:`Cell` objects (the stable identity
  behind a ref: start, restart, request_restart, request_stop, finalize, hand_over) and hears
  of its children through the :class:`CellSupervisor` protocol;
- a transport (``llmos.transport``) checks and looks up messages (:func:`check_message`,
  :func:`message_class`, :data:`MAX_DEPTH`), records what it cannot deliver
  (:func:`record_dead_letter`), answers asyncio asks with :class:`AsyncReply` (its
  ``ask_async`` returns :func:`ask_on_loop`'s :class:`AskFuture`, as a local ref's), feeds actors
  with ``LocalRef.post`` and ``Reply.add_done_callback`` (in :mod:`llmos.actors`), and checks
  its requests' timeouts as asks do (:func:`check_timeout`);
- a :class:`Mailbox` (with :data:`Envelope` and :func:`envelope`) is what ``Actor.actor_mailbox``
  builds for a cell; a cell run by a dispatcher is its mailbox's :class:`TurnScheduler`
  (``Mailbox.schedule_turns``), told when a message arrives;
- a transport carries trace contexts: ``trace_state.hook`` is the active :class:`TraceHook`
  (None while tracing is off, the one check a send makes); it asks the hook for the
  traceparent of a tell (``outgoing``) or an ask (``ask``), checks one from a peer with
  :func:`llmos.actors.tracing.check_traceparent`, and passes it to ``LocalRef.post``; a
  message from a peer that carries none gets what the hook's ``incoming`` gives it;
- a layer that must see every message sent and every delivery (a run recorder, in
  ``llmos.agents``) installs its own :class:`TraceHook` with :func:`install_trace_hook`, in
  place of tracing (one hook at a time), parses the contexts it made with
  :func:`parse_traceparent` and names the sending actor with :func:`current_actor_name`.
"""

from llmos.actors._async_reply import AskFuture, AsyncReply, ask_on_loop
from llmos.actors._cell import Cell, CellSupervisor
from llmos.actors._mailbox import Envelope, Mailbox, TurnScheduler, envelope
from llmos.actors._messages import MAX_DEPTH, check_message, message_class
from llmos.actors._records import record_dead_letter
from llmos.actors._ref import check_timeout
from llmos.actors._reply import current_actor_name
from llmos.actors._trace import TraceHook, install_trace_hook, parse_traceparent
from llmos.actors._trace import state as trace_state

__all__ = [
    "MAX_DEPTH",
    "AskFuture",
    "AsyncReply",
    "Cell",
    "CellSupervisor",
    "Envelope",
    "Mailbox",
    "TraceHook",
    "TurnScheduler",
    "ask_on_loop",
    "check_message",
    "check_timeout",
    "current_actor_name",
    "envelope",
    "install_trace_hook",
    "message_class",
    "parse_traceparent",
    "record_dead_letter",
    "trace_state",
]
