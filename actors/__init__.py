# llmos.actors: the actor core, on pykka.
#   _errors    the one error tree (LlmosError and below)
#   _messages  typed messages (@message), the send-time wire check, Terminated
#   _mailbox   mailboxes (unbounded, or bounded with a policy) and envelopes
#   _reply     reply futures for ask, waited on from a thread
#   _async_reply  the asyncio side of ask_async: one wake-up and one timer per loop, not per ask
#   _cell      the stable identity behind a ref: mailbox, counters, life cycle, and the
#              actor loop its thread (or its dispatcher's turns) runs (handle, fail, halt, stop)
#   _dispatcher  a few threads running many actors' turns (actors with no thread of their own)
#   _ref       ActorRef / LocalRef
#   _actor     Actor (subclass it) and @handler
#   _records   ActorStats, dead letters
#   _system    get, find, running, stop_all
#   lowlevel   (public) what the layers above build on: Cell, Mailbox, check_message...
#   _trace     the trace context envelopes carry (one check on the hot path while off)
#   tracing    (public) OpenTelemetry spans across actors and nodes: enable, disable, ...
# Imports point inward only: this package imports nothing else of llmos.
from llmos.actors._actor import UNHANDLED, Actor, handler
from llmos.actors._dispatcher import Dispatcher
from llmos.actors._errors import (
    ActorDeadError,
    ActorError,
    AskAbandoned,
    AskTimeout,
    DeadlockError,
    LlmosError,
    MailboxFull,
    MessageError,
    NameTaken,
    UnknownMessageType,
)
from llmos.actors._local_ref import LocalRef
from llmos.actors._mailbox import WhenFull
from llmos.actors._messages import (
    Terminated,
    message,
    message_fields,
    wire_name,
)
from llmos.actors._records import (
    ASK_LATENCY_BOUNDS,
    ActorStats,
    DeadLetter,
    dead_letter_count,
    dead_letters,
)
from llmos.actors._ref import ActorRef, default_ask_timeout, set_default_ask_timeout
from llmos.actors._reply import Reply, Returns, late_replies
from llmos.actors._system import find, get, running, stop_all

__all__ = [
    "ASK_LATENCY_BOUNDS",
    "UNHANDLED",
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorRef",
    "ActorStats",
    "AskAbandoned",
    "AskTimeout",
    "DeadLetter",
    "DeadlockError",
    "Dispatcher",
    "LlmosError",
    "LocalRef",
    "MailboxFull",
    "MessageError",
    "NameTaken",
    "Reply",
    "Returns",
    "Terminated",
    "UnknownMessageType",
    "WhenFull",
    "dead_letter_count",
    "dead_letters",
    "default_ask_timeout",
    "find",
    "get",
    "handler",
    "late_replies",
    "message",
    "message_fields",
    "running",
    "set_default_ask_timeout",
    "stop_all",
    "wire_name",
]
