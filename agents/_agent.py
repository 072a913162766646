"""Agent: the base class users subclass to write their own agents, and spawn().

An agent is an actor with a name, a description, typed handlers, validated input and an
operation log (its input check is ``llmos.agents._validation``). A rule-based agent needs no
model::

    @message("demo.Add")
    class Add:
        a: float
        b: float

    class Adder(Agent):
        agent_description = "adds two numbers"

        @handler(Add)
        def add(self, msg: Add) -> float:
            return msg.a + msg.b

In a dialogue an agent is asked ``Turn`` and answers an ``Utterance`` (or a plain str); see
``llmos.agents._agent_messages``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import llmos.actors as actors
import llmos.actors.lowlevel as lowlevel
from llmos.actors import Actor, ActorRef, DeadlockError, handler, tracing, wire_name
from llmos.agents._agent_messages import AgentInfo, Describe, GetOpLog, Turn
from llmos.agents._effects import EffectFn
from llmos.agents._errors import AgentError
from llmos.agents._oplog import OpLog, OpRecord
from llmos.agents._runlog import RunTurn, recording_for
from llmos.agents._validation import check_input
from llmos.kernel import Restart, kernel

__all__ = ["Agent", "spawn"]

log = logging.getLogger("llmos.agents")


def _type_name(msg: Any) -> str:
    return wire_name(type(msg)) or type(msg).__name__


# -- spawning and lookup -----------------------------------------------------------------------


def spawn(
    actor_class: type[Actor],
    *args: Any,
    name: str | None = None,
    restart: Restart = "permanent",
    restart_on_ask_error: bool = False,
    **kwargs: Any,
) -> ActorRef:
    """Start an actor supervised by this node's kernel (``llmos.kernel.kernel().spawn``).

    Args:
        actor_class: the class to start.
        *args: passed to its constructor.
        name: its name (default: ``ClassName-N``).
        restart: "permanent", "transient" or "temporary" (see ``llmos.kernel.Restart``).
        restart_on_ask_error: also restart it when a handler raises while answering an ask.
            Give it to dialogue participants, so one that raises mid-turn comes back fresh
            (carrying what its ``pre_restart`` keeps) before the dialogue retries the turn.
        **kwargs: passed to its constructor (and ``capacity``, ``when_full``, ``supervisor``
            to the kernel).

    Returns:
        Its stable ref, which survives restarts.

    Raises:
        NameTaken: a live actor holds the name.
        SupervisionError: an invalid option.
    """
    return kernel().spawn(
        actor_class,
        *args,
        name=name,
        restart=restart,
        restart_on_ask_error=restart_on_ask_error,
        **kwargs,
    )


# -- the Agent ----------------------------------------------------------------------------------


class Agent(Actor):
    """Base class for agents: an actor with validated input and an operation log.

    Write handlers with ``@handler(MessageClass)`` as for any actor. Before a handler runs the
    message is checked: field types against the message class's annotations, every str against
    ``agent_max_text_chars``, every list or dict against ``agent_max_items``. A refused ask fails
    with :class:`~llmos.agents.AgentError` (the agent goes on, no restart); a refused tell goes to
    dead letters with a warning. Every handled message adds an :class:`OpRecord` to the log.

    Failure contract: as for :class:`~llmos.actors.Actor`. Subclasses that carry state across a
    restart override ``pre_restart``/``post_restart`` and call ``super()`` (the operation log is
    carried that way).

    Args:
        description: what the agent does (default: ``agent_description``).
        oplog: a JSONL file to append the operation log to (default: memory only).

    Class attributes:
        agent_description: the default description.
        agent_max_text_chars: the longest str accepted in a message.
        agent_max_items: the most items accepted in a list or dict in a message.
        agent_oplog_capacity: how many records the in-memory log keeps.
        agent_oplog_quiet: message types not logged (streamed chunks, say).
        agent_turn_timeout: how long a dialogue should wait for this agent's turn (None: the
            dialogue's default).
    """

    agent_description: str = ""
    agent_max_text_chars: ClassVar[int] = 16_000
    agent_max_items: ClassVar[int] = 1_000
    agent_oplog_capacity: ClassVar[int] = 1_000
    agent_oplog_quiet: ClassVar[tuple[type[Any], ...]] = ()
    agent_turn_timeout: ClassVar[float | None] = None

    def __init__(
        self, *, description: str | None = None, oplog: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__()
        if description is not None and not isinstance(description, str):
            raise AgentError(f"an agent description must be a str, got {description!r}")
        self.agent_description = (
            description
            if description is not None
            else (type(self).agent_description or (type(self).__doc__ or "").strip().split("\n")[0])
        )
        self.agent_oplog = OpLog(self.agent_oplog_capacity, oplog)
        self._agent_run: RunTurn | None = None  # the recorded turn being answered, if any

    @property
    def agent_name(self) -> str:
        """This agent's name (its actor name)."""
        return self.actor_name

    # -- helpers for subclasses ---------------------------------------------------------------

    def ask_agent(self, target: ActorRef | str, msg: Any, timeout: float = 30.0) -> Any:
        """Ask another agent (by ref or name) and wait for the answer, at most ``timeout``.

        Raises:
            DeadlockError: the target is this agent itself.
            AskTimeout, ActorDeadError: as for any ask; or whatever the target raised.
        """
        ref = self.lookup(target) if isinstance(target, str) else target
        if ref == self.actor_ref:
            raise DeadlockError(f"{self.agent_name} asked itself; call the method directly")
        run = self._agent_run
        if run is not None:  # a recorded run: the call is logged (or answered from the log)
            return run.call(self.agent_name, ref, msg, lambda: ref.ask(msg, timeout=timeout).get())
        return ref.ask(msg, timeout=timeout).get()

    def agent_effect(
        self, name: str, args: Mapping[str, Any], fn: EffectFn, *, idempotent: bool = False
    ) -> Any:
        """Perform a side effect (a payment, a write, a tool call) exactly once per run.

        In a turn of a recorded chat the effect goes through the run's
        :class:`~llmos.agents.EffectJournal`, keyed by run, agent, turn, ``name``, ``args`` and
        its order in the turn: its intent is committed before ``fn`` runs and its result
        after, and a resumed run gets the recorded result instead of running it again. An
        effect cut off by a crash runs again if ``idempotent`` (``fn`` must hand its key to the
        system it changes), else raises :class:`~llmos.agents.EffectInDoubt` and the chat
        stops for a decision. Outside a recorded run ``fn`` simply runs, with a fresh key.

        Args:
            name: what the effect is.
            args: its arguments (msgpack-able).
            fn: ``fn(args, key) -> result`` (a msgpack-able result).
            idempotent: ``fn`` applies one key once, however often it is called.

        Returns:
            What ``fn`` returned (now, or when the run first performed it).

        Raises:
            EffectInDoubt: see above. Whatever ``fn`` raises (recorded: raised again on resume).
        """
        run = self._agent_run
        if run is None:
            return fn(dict(args), f"{self.agent_name}/{uuid.uuid4().hex}")
        run.effects += 1
        journal = run.recording.effects()
        return journal.perform(
            self.agent_name, run.turn, name, args, fn, idempotent=idempotent, order=run.effects
        )

    def tell_agent(self, target: ActorRef | str, msg: Any) -> None:
        """Send a message to another agent (by ref or name) without waiting.

        In a turn of a recorded chat the message is recorded too (key
        ``<turn's key>/tell/<n>``, caused by the turn).
        """
        ref = self.lookup(target) if isinstance(target, str) else target
        run = self._agent_run
        if run is not None:
            run.told(self.agent_name, ref, msg)
        ref.tell(msg)

    def lookup(self, name: str) -> ActorRef:
        """The ref of the agent (or pool) named ``name`` on this node, through the kernel.

        Raises:
            ActorDeadError: no live actor has that name.
        """
        return kernel().lookup(name)

    def spawn(
        self, actor_class: type[Actor], *args: Any, name: str | None = None, **kwargs: Any
    ) -> ActorRef:
        """Start another actor under the kernel; see :func:`spawn`."""
        return spawn(actor_class, *args, name=name, **kwargs)

    def agent_validate(self, msg: Any) -> None:
        """Check a message before its handler runs; override to add checks (call super).

        Raises:
            AgentError: the message is refused.
        """
        check_input(msg, self.agent_max_text_chars, self.agent_max_items, self._who())

    def _who(self) -> str:
        try:
            return f"agent {self.agent_name!r}"
        except actors.ActorError:
            return f"a {type(self).__name__}"

    # -- dispatch: validate, run, log --------------------------------------------------------

    def actor_dispatch(self, msg: Any) -> Any:
        """Validate, run and log one message (see ``Actor.actor_dispatch``)."""
        is_ask = self.actor_asked
        started_at = time.time()
        start = time.perf_counter()
        quiet = isinstance(msg, self.agent_oplog_quiet)
        if tracing.enabled():  # the span handling this message names the agent
            tracing.set_attributes({"gen_ai.agent.name": self.agent_name})
        try:
            self.agent_validate(msg)
        except AgentError as exc:
            self._log(msg, "refused", "refused", started_at, start, exc)
            if is_ask:
                self.actor_defer_reply().set_exception(exc)
            else:
                log.warning("%s", exc)
                lowlevel.record_dead_letter(self._name_or_class(), msg, f"refused: {exc}")
            return None
        if isinstance(msg, Turn):
            self._agent_run = _run_turn(msg)
        try:
            result = super().actor_dispatch(msg)
        except BaseException as exc:
            self._log(msg, self._op_name(msg), "error", started_at, start, exc)
            raise
        finally:
            self._agent_run = None
        if result is actors.UNHANDLED:
            self._log(msg, "unhandled", "unhandled", started_at, start, None)
            if is_ask and self.actor_asked:
                accepts = ", ".join(sorted(_type_name_of(t) for t in self.actor_message_types()))
                self.actor_defer_reply().set_exception(
                    AgentError(
                        f"{self._who()} ({type(self).__name__}) does not accept "
                        f"{_type_name(msg)}; it accepts: {accepts}"
                    )
                )
                return None
        elif not quiet:
            self._log(msg, self._op_name(msg), "ok", started_at, start, None)
        return result

    def _op_name(self, msg: Any) -> str:
        return self.actor_handler_name(msg)

    def _name_or_class(self) -> str:
        try:
            return self.actor_name
        except actors.ActorError:
            return type(self).__name__

    def _log(
        self,
        msg: Any,
        op: str,
        outcome: str,
        started_at: float,
        start: float,
        error: BaseException | None,
    ) -> None:
        self.agent_oplog.add(
            OpRecord(
                agent=self._name_or_class(),
                op=op,
                message_type=_type_name(msg),
                started_at=started_at,
                seconds=time.perf_counter() - start,
                outcome=outcome,
                error_type=type(error).__name__ if error is not None else "",
                error=str(error)[:300] if error is not None else "",
            )
        )

    # -- built-in handlers ---------------------------------------------------------------------

    @handler(Describe)
    def describe(self, _msg: Describe) -> AgentInfo:
        """Say who this agent is."""
        accepts = sorted(_type_name_of(t) for t in self.actor_message_types())
        return AgentInfo(
            name=self.agent_name,
            description=self.agent_description,
            kind=type(self).__name__,
            accepts=accepts,
            turn_timeout=self.agent_turn_seconds(),
        )

    def agent_turn_seconds(self) -> float:
        """How long a dialogue should wait for this agent's turn (0: the dialogue's default).

        ``agent_turn_timeout`` by default; an agent whose turn waits on something slower (a
        model, a person) says so here, so a dialogue never gives up on a turn the agent is
        still allowed to finish.
        """
        return float(self.agent_turn_timeout or 0.0)

    @handler(GetOpLog)
    def get_oplog(self, msg: GetOpLog) -> list[dict[str, Any]]:
        """The operation log as plain dicts (oldest first)."""
        records = self.agent_oplog.records()
        if msg.last > 0:
            records = records[-msg.last :]
        return [r.as_dict() for r in records]

    # -- life cycle ---------------------------------------------------------------------------

    def pre_restart(self, error: BaseException) -> Any:
        """Carry the operation log to the restarted instance (subclasses: extend the dict)."""
        return {"oplog": self.agent_oplog}

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        """Take the operation log over from the failed instance, then run ``on_start``."""
        if isinstance(state, dict) and isinstance(state.get("oplog"), OpLog):
            self.agent_oplog.close()
            self.agent_oplog = state["oplog"]
        self.on_start()

    def on_stop(self) -> None:
        """Close the operation log file (subclasses overriding this: call super)."""
        self.agent_oplog.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        """Close the operation log file when no supervisor will restart this agent."""
        if not self.actor_supervised:
            self.agent_oplog.close()


def _run_turn(turn: Turn) -> RunTurn | None:
    """The recorded turn a Turn message asks for, when its chat records."""
    recording = recording_for(turn.dialogue) if isinstance(turn.dialogue, str) else None
    if recording is None:
        return None
    attempt = str(turn.request_id).rpartition(":")[2]
    return RunTurn(recording, turn.turn, f"turn/{turn.turn}/{attempt}")


def _type_name_of(cls: type[Any]) -> str:
    return wire_name(cls) or cls.__name__
