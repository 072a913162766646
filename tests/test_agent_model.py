"""Agents on the real default model (SmolLM2-135M-Instruct), weights loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmos.actors import ActorRef
from llmos.agents._agent_messages import Prompt, Utterance
from llmos.agents._chat_agent import ChatAgent, GetMemory
from llmos.agents._dialogue import run_chat
from llmos.agents._selection import ModelSelector
from llmos.agents._termination import MaxTurns
from llmos.models._actor import ModelActor, shared_model

pytestmark = pytest.mark.model


@pytest.fixture(scope="session")
def weights() -> Any:
    return shared_model()  # the first load converts the GGUF file; later ones are cached


@pytest.fixture
def model(weights: Any) -> Iterator[ActorRef]:
    # A fresh actor per test (the autouse fixture stops every actor after each test); it
    # shares the weights loaded once above.
    yield ModelActor.start(name="model")


def test_chat_agent_answers_through_the_model(model: ActorRef) -> None:
    ann = ChatAgent.start(model, "You are a helpful assistant.", max_new_tokens=12, name="ann")
    reply = ann.ask(Prompt("What is the capital of France?"), timeout=240).get()
    assert isinstance(reply, Utterance) and reply.speaker == "ann"
    assert "Paris" in reply.text
    assert 0 < reply.tokens <= 12 and reply.finish_reason in ("stop", "length")
    memory = ann.ask(GetMemory(), timeout=10).get()
    assert memory["turns"][-1] == {"role": "assistant", "content": reply.text}


def test_group_chat_end_to_end_with_a_model_selector(model: ActorRef) -> None:
    team = [
        ChatAgent.start(model, persona, max_new_tokens=8, name=name)
        for name, persona in [
            ("chef", "You are a chef. Suggest one dish."),
            ("doctor", "You are a doctor. Comment on health."),
            ("critic", "You are a food critic. Judge the dish."),
        ]
    ]
    result = run_chat(
        team,
        "What should we cook tonight?",
        selector=ModelSelector(model, max_new_tokens=4),
        termination=MaxTurns(2),
        printer=None,
        timeout=280,
    )
    assert result.stopped_by == "MaxTurns" and result.turns == 2
    assert len(result.utterances) == 2 and all(e.text for e in result.utterances)
    assert result.speakers[0] != result.speakers[1]  # the selector never repeats a speaker
    assert result.tokens > 0
