"""The errors of llmos.agents, under the one tree of :mod:`llmos.actors` (drawn there)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmos.actors import LlmosError

if TYPE_CHECKING:
    from llmos.agents._transcript import ChatResult

__all__ = ["AgentError", "ChatTimeout"]


class AgentError(LlmosError):
    """Raised when an agent refuses its input or a dialogue cannot go on.

    :class:`~llmos.agents.ChatTimeout` (a subclass) says that ``run_chat``'s own bound ran out.
    """


class ChatTimeout(AgentError, TimeoutError):
    """Raised by :func:`run_chat` when the chat has not ended within ``timeout``.

    The chat is stopped first; what was said so far is in ``result`` (``stopped_by``
    "stopped"). Unlike a :class:`~llmos.agents.TimeLimit` condition, which ends a chat normally,
    this means the caller's bound ran out: raise it, or add a TimeLimit condition.

    Attributes:
        result: the chat up to the moment it was stopped.
    """

    def __init__(self, text: str, result: ChatResult | None) -> None:
        super().__init__(text)
        self.result = result
