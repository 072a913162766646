"""The one error tree of llmos.

Every error llmos raises derives from :class:`LlmosError`. Errors of the libraries underneath
(pykka, pyzmq, msgpack, transformers) are translated at the boundary with ``raise ... from exc``,
so the original stays reachable as ``__cause__``::

    LlmosError
    ├── ActorError                 something went wrong talking to one actor
    │   ├── ActorDeadError         the actor is stopped (or never existed) and cannot answer
    │   ├── AskTimeout             an ask got no reply within its timeout (also a TimeoutError)
    │   │   └── StreamStalled      (llmos.models) a token stream stopped sending chunks
    │   ├── AskAbandoned           an ask was dropped unstarted: its asker had given up on it
    │   ├── MailboxFull            a bounded mailbox refused a message
    │   │   └── PeerBusy           (llmos.transport) the send queue to a peer stayed full
    │   ├── DeadlockError          an actor blocked on an ask to itself
    │   └── NameTaken              a second live actor was given a name already in use
    ├── MessageError               a message cannot be sent as it is (also a TypeError)
    │   └── UnknownMessageType     a wire name no message class is registered under
    ├── TransportError             (llmos.transport) something went wrong between nodes
    │   ├── NodeUnreachable        (llmos.transport) the peer node is down, gone or not answering
    │   ├── FrameError             (llmos.transport) a frame was garbage, truncated, too large
    │   ├── AuthError              (llmos.transport) CURVE keys are missing, wrong or not allowed
    │   ├── RemoteError            (llmos.transport) a remote error of a type unknown here
    │   ├── NotAllowed             (llmos.transport) a peer asked for what the node forbids
    │   │   ├── SpawnRefused       (llmos.transport) the class is not on the spawn allowlist
    │   │   └── QuotaExceeded      (llmos.transport) a per-peer quota is spent
    │   ├── SpawnFailed            (llmos.transport) an allowed class could not be started there
    │   ├── RequestExpired         (llmos.transport) a request arrived past its deadline
    │   └── PeerBusy               (llmos.transport) also a MailboxFull, see above
    ├── SupervisionError           (llmos.kernel) a supervisor gave up or was misused
    ├── ModelError                 (llmos.models) a model failed to load, or refused a request
    │   ├── ModelOutOfMemory       (llmos.models) the device ran out of memory for a batch
    │   ├── BudgetExceeded         (llmos.models) a caller's token budget is spent
    │   └── PromptTooLarge         (llmos.models) a prompt over the byte cap, refused untokenized
    ├── AgentError                 (llmos.agents) an agent or chat refused its input or cannot go on
    │   ├── ChatTimeout            (llmos.agents) run_chat's own bound ran out
    │   ├── RunLogError            (llmos.agents) a run log is missing, damaged or unwritable
    │   ├── EffectInDoubt          (llmos.agents) an effect was cut off mid-way: decide, resume
    │   ├── StructuredOutputError  (llmos.agents) a typed answer was cut short or did not validate
    │   └── ToolError              (llmos.agents) a tool call did not succeed (its code raised it)
    │       ├── ToolArgumentsError (llmos.agents) the arguments do not fit the tool's schema
    │       ├── ToolTimeout        (llmos.agents) no answer within the tool's timeout
    │       ├── ToolBusy           (llmos.agents) its concurrency and waiting line were full
    │       ├── ToolCrashed        (llmos.agents) its code raised: the kernel restarts its actor
    │       └── ToolUnavailable    (llmos.agents) no such tool, or its actor is out of reach
    │           └── McpError       (llmos.agents) an MCP server could not be started or was lost
    └── ClusterError               (llmos.cluster) Ray could not place, find or start a node

Classes marked with a package are defined there (each package adds its own below these); the
rest are defined here. A test keeps this drawing complete.
"""

from __future__ import annotations

__all__ = [
    "ActorDeadError",
    "ActorError",
    "AskAbandoned",
    "AskTimeout",
    "DeadlockError",
    "LlmosError",
    "MailboxFull",
    "MessageError",
    "NameTaken",
    "UnknownMessageType",
]


class LlmosError(Exception):
    """Root of every error llmos raises. Catch this to catch them all."""


class ActorError(LlmosError):
    """A problem talking to one actor: its state, its mailbox or a reply."""


class ActorDeadError(ActorError):
    """Raised when a message is sent to, or an ask waits on, an actor that is stopped.

    Unlike :class:`AskTimeout`, this is known for certain: the actor will not answer (it
    stopped for good, was never started, or stopped before it reached the message). Start it
    again (or let its supervisor restart it) and resend.
    """


class AskTimeout(ActorError, TimeoutError):
    """Raised when an ask got no reply within its timeout.

    The actor may still be alive and busy; the reply, if it comes later, is dropped. Raise the
    timeout or find out why the actor is slow (``statistics()`` shows its mailbox depth).
    """


class AskAbandoned(ActorError):
    """An ask taken off a mailbox after its asker had given up on it, so it was not started.

    The asker had stopped for good, or (an ask from another node) could no longer hear this
    node long enough to report the request failed. Nothing ran; whoever still waits may retry.
    """


class MailboxFull(ActorError):
    """Raised when a bounded mailbox is full and its policy is to fail (or blocking timed out).

    The message was not queued. Slow down, retry later, or give the actor a larger capacity.
    """


class DeadlockError(ActorError):
    """Raised at once when an actor blocks waiting on an ask to itself.

    The actor handles one message at a time, so it could never answer. Use ``tell`` to itself,
    or call the method directly.
    """


class NameTaken(ActorError):
    """Raised when an actor is started under a name that a live actor already holds."""


class MessageError(LlmosError, TypeError):
    """Raised when a message cannot be sent: it holds a value that has no wire form.

    Messages are plain msgpack data (None, bool, int, float, str, bytes, list, tuple, dict) or
    instances of registered message classes, or actor refs. Convert other objects first.
    """


class UnknownMessageType(MessageError):
    """Raised when a wire name has no registered message class in this process."""
