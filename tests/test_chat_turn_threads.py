"""A chat waits for each turn through the reply's done callback: no thread per turn."""

from __future__ import annotations

import threading
from typing import Any

from llmos.agents._chat_agent import ChatAgent
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._termination import MaxTurns
from llmos.models._fake import FakeModel

TURNS = 50


def test_a_fifty_turn_dialogue_starts_no_thread_per_turn() -> None:
    seen: list[set[threading.Thread]] = []

    def reply(messages: list[dict[str, Any]]) -> str:
        seen.append(set(threading.enumerate()))  # in the model's thread, each call
        return f"point {len(seen)}"

    fake = FakeModel.start(reply, name="fake")
    ann = ChatAgent.start(fake, "You are Ann.", name="ann")
    bob = ChatAgent.start(fake, "You are Bob.", name="bob")
    result = run_chat(
        [ann, bob], "Tea?", chat_class=Dialogue, termination=MaxTurns(TURNS), printer=None
    )
    assert len(result.utterances) == TURNS and len(seen) >= TURNS
    # From the second turn on (the first may still be starting the shared timer's thread),
    # every turn runs among the same threads: none is started per turn.
    settled = seen[1]
    started = set().union(*seen[1:]) - settled
    assert not started, f"threads started during the chat: {sorted(t.name for t in started)}"
    counts = [len(s) for s in seen[1:]]
    assert max(counts) == min(counts) == len(settled)
