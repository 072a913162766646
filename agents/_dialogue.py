"""Two-agent dialogues, and ``run_chat``: start a chat, wait for its result, stop it.

Example::

    result = run_chat([alice, bob], "Is tea better than coffee?",
                      termination=MaxTurns(6) | Repetition(), printer=None, timeout=120)
    print(result.reason)
    for entry in result.utterances:
        print(entry.speaker, entry.text)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmos.actors import ActorRef
from llmos.agents._errors import AgentError
from llmos.agents._group_chat import GroupChat
from llmos.agents._transcript import ChatResult

__all__ = ["Dialogue", "run_chat"]


class Dialogue(GroupChat):
    """A conversation of two agents taking turns, ``first`` speaking first.

    Args:
        first: the agent that opens (a ref or the name of a running actor).
        second: the other one.
        task: the topic or question.
        **kwargs: as for :class:`GroupChat` (termination, max_turns, printer, save_to, ...),
            except ``selector``: the two always alternate.
    """

    def __init__(
        self, first: ActorRef | str, second: ActorRef | str, task: str = "", **kwargs: Any
    ) -> None:
        if "selector" in kwargs:
            raise AgentError("a Dialogue alternates its two speakers; use GroupChat to select")
        super().__init__([first, second], task, selector="round_robin", **kwargs)

    @classmethod
    def run(  # type: ignore[override]
        cls,
        first: ActorRef | str,
        second: ActorRef | str,
        task: str = "",
        *,
        timeout: float = 300.0,
        name: str | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        """Run a dialogue to its end (see :func:`run_chat`) and return its result.

        Raises:
            ChatTimeout: it had not ended within ``timeout``.
        """
        return super().run([first, second], task, timeout=timeout, name=name, **kwargs)

    @classmethod
    def open_chat(
        cls, participants: Sequence[ActorRef | str], task: str, name: str | None, **kwargs: Any
    ) -> ActorRef:
        if len(participants) != 2:
            raise AgentError(f"a Dialogue has two participants, got {len(participants)}")
        return cls.start(participants[0], participants[1], task, name=name, **kwargs)


def run_chat(
    participants: Sequence[ActorRef | str],
    task: str = "",
    *,
    timeout: float = 300.0,
    name: str | None = None,
    chat_class: type[GroupChat] = GroupChat,
    **kwargs: Any,
) -> ChatResult:
    """Run a chat to its end: start the chat actor, wait for the result, stop the actor.

    The participants are not stopped; they belong to the caller.

    Args:
        participants: the agents (refs or names); two of them and ``chat_class=Dialogue``
            for a dialogue.
        task: the topic or question.
        timeout: the most seconds to wait for the end.
        name: the chat actor's name (default: chosen by the core).
        chat_class: GroupChat, Dialogue, or a subclass.
        **kwargs: passed to the chat's constructor (selector, termination, printer, ...).

    Returns:
        The :class:`ChatResult`, whose ``reason`` says why it ended.

    Raises:
        ChatTimeout: the chat had not ended within ``timeout`` (it is stopped; the partial
            result is attached).
        AgentError: bad arguments.
    """
    if issubclass(chat_class, Dialogue):
        if len(participants) != 2:
            raise AgentError(f"a Dialogue has two participants, got {len(participants)}")
        return chat_class.run(
            participants[0], participants[1], task, timeout=timeout, name=name, **kwargs
        )
    return chat_class.run(participants, task, timeout=timeout, name=name, **kwargs)
