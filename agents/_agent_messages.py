"""The messages every agent and dialogue participant understands.

A dialogue asks each participant :class:`Turn` and gets an :class:`Utterance` back; outside a
dialogue anyone may send an agent a :class:`Prompt`. :class:`Describe` and :class:`GetOpLog` are
answered by every :class:`~llmos.agents.Agent`.
"""

from __future__ import annotations

from typing import Any

from llmos.actors import ActorRef, message

__all__ = ["AgentInfo", "Describe", "GetOpLog", "Prompt", "Turn", "Utterance"]


@message("llmos.agents.Turn")
class Turn:
    """A dialogue asks a participant to speak; the answer is an :class:`Utterance` (or a str).

    Attributes:
        dialogue: the dialogue's name.
        turn: the turn number, from 1.
        new: what was said since this participant last spoke, oldest first; each entry is
            ``{"index": int, "speaker": str, "text": str}`` (index: position in the transcript,
            so a retried turn can skip entries it has already seen).
        task: the dialogue's topic or question.
        participants: the names of everyone in the dialogue.
        max_tokens: the most tokens to say (0: the agent's own default).
        stream_to: a ref that wants the model's TokenChunks (agents without a model ignore it).
        request_id: the id to put on a streamed Generate request.
    """

    dialogue: str
    turn: int
    new: list[dict[str, Any]]
    task: str = ""
    participants: tuple[str, ...] = ()
    max_tokens: int = 0
    stream_to: ActorRef | None = None
    request_id: str = ""


@message("llmos.agents.Utterance")
class Utterance:
    """What an agent says: the answer to :class:`Turn` and :class:`Prompt`.

    Attributes:
        speaker: the agent's name.
        text: what it says.
        tokens: tokens generated for it (0: the dialogue counts whitespace-separated words).
        finish_reason: "stop", "length", ... as the model reported; "end_chat" asks the
            dialogue to end, with ``text`` as the reason (a human typing /quit does this).
    """

    speaker: str
    text: str
    tokens: int = 0
    finish_reason: str = "stop"


@message("llmos.agents.Prompt")
class Prompt:
    """Say something to an agent outside a dialogue; the answer is an :class:`Utterance`.

    Attributes:
        text: what is said.
        sender: who says it ("" for the user).
    """

    text: str
    sender: str = ""


@message("llmos.agents.Describe")
class Describe:
    """Ask an agent for its :class:`AgentInfo`."""


@message("llmos.agents.AgentInfo")
class AgentInfo:
    """Who an agent is (the answer to :class:`Describe`).

    Attributes:
        name: the agent's name.
        description: what it does (a selector model reads this to pick the next speaker).
        kind: its class name.
        accepts: the message types it handles (wire names, or Python names).
        turn_timeout: how long a dialogue should wait for its turn (0: the dialogue's default).
    """

    name: str
    description: str
    kind: str
    accepts: list[str]
    turn_timeout: float = 0.0


@message("llmos.agents.GetOpLog")
class GetOpLog:
    """Ask an agent for its operation log, as a list of record dicts (oldest first).

    Attributes:
        last: only the newest ``last`` records (0: all that are kept).
    """

    last: int = 0
