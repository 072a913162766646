"""The errors of llmos.agents, under the one tree of :mod:`llmos.actors` (drawn there).

:class:`~llmos.agents.ChatTimeout` lives beside the ``ChatResult`` it carries, in ``_transcript``.
"""

from __future__ import annotations

from llmos.actors import LlmosError

__all__ = ["AgentError"]


class AgentError(LlmosError):
    """Raised when an agent refuses its input or a dialogue cannot go on.

    :class:`~llmos.agents.ChatTimeout` (a subclass) says that ``run_chat``'s own bound ran out.
    """
