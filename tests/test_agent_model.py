"""Agents on the real default model (SmolLM2-135M-Instruct), weights loaded once per session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llmos.actors import ActorRef
from llmos.agents._agent_messages import Prompt, Utterance
from llmos.agents._chat_agent import ChatAgent
from llmos.agents._chat_agent_messages import GetMemory
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._replies import similarity
from llmos.agents._selection import ModelSelector
from llmos.agents._termination import MaxTurns
from llmos.kernel import TokenUsage
from llmos.models import (
    Completion,
    Generate,
    GenerateParams,
    GetLedger,
    ModelEngine,
    Score,
    Scores,
    Tokenize,
    ends_sentence,
)
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
        selector=ModelSelector(model),
        termination=MaxTurns(2),
        printer=None,
        timeout=280,
    )
    assert result.stopped_by == "MaxTurns" and result.turns == 2
    assert len(result.utterances) == 2 and all(e.text for e in result.utterances)
    assert result.speakers[0] != result.speakers[1]  # the selector never repeats a speaker
    assert not [n for n in result.notes if "selector" in n.text]  # its picks are all valid
    assert result.tokens > 0


def test_scoring_reads_the_models_own_choice(model: ActorRef) -> None:
    ask = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    candidates = ("Berlin", "Paris", "Madrid")
    request = Score(candidates, messages=ask, requester="judge", dialogue="quiz")
    scores = model.ask(request, timeout=120).get()
    assert isinstance(scores, Scores) and len(scores.logprobs) == 3
    assert all(lp <= 0 for lp in scores.logprobs)
    assert scores.best(candidates) == "Paris"
    # It read the prompt (as a Generate of the same messages feeds it) and each candidate's
    # tokens but the last: charged to its requester and dialogue, with no output.
    prompt = model.ask(Generate(messages=ask, max_new_tokens=1), timeout=120).get().prompt_tokens
    split = model.ask(Tokenize(candidates), timeout=120).get()
    assert scores.input_tokens == prompt + sum(len(ids) - 1 for ids in split.ids)
    ledger = model.ask(GetLedger(), timeout=120).get()
    assert ledger.agents["judge"] == TokenUsage(scores.input_tokens, 0, 1, None)
    assert ledger.dialogues == {"quiz": TokenUsage(scores.input_tokens, 0, 1)}


def test_a_reply_finishes_its_sentence_within_the_overshoot(model: ActorRef) -> None:
    ask = [{"role": "user", "content": "Describe the sea in three sentences."}]
    done = model.ask(
        Generate(messages=ask, max_new_tokens=10, finish_sentence=40), timeout=120
    ).get()
    assert isinstance(done, Completion)
    assert ends_sentence(done.text) or done.completion_tokens == 50
    assert done.completion_tokens >= 10 or done.finish_reason == "stop"


def test_no_repeat_ngram_keeps_the_model_from_copying_a_text(weights: Any) -> None:
    engine = ModelEngine(weights)
    line = "The quick brown fox jumps over the lazy dog near the old river bank."
    ask = [{"role": "user", "content": f"Repeat exactly: {line}"}]
    copied = engine.generate(GenerateParams(messages=ask, max_new_tokens=20))
    fresh = engine.generate(
        GenerateParams(messages=ask, max_new_tokens=20, no_repeat_ngram=3, avoid=(line,))
    )

    def grams(text: str) -> set[tuple[int, ...]]:
        ids = weights.tokenizer(text, add_special_tokens=False)["input_ids"]
        return {tuple(ids[i : i + 3]) for i in range(len(ids) - 2)}

    assert grams(copied.text) & grams(line)  # greedy copies it...
    assert not grams(fresh.text) & grams(line)  # ...and cannot when told to avoid it


def test_a_dialogue_on_the_model_reads_cleanly(model: ActorRef) -> None:
    ada = ChatAgent.start(model, "You are Ada, an upbeat planner.", max_new_tokens=24, name="ada")
    rex = ChatAgent.start(model, "You are Rex, a shop owner.", max_new_tokens=24, name="rex")
    result = run_chat(
        [ada, rex],
        "Should the main street be car-free?",
        chat_class=Dialogue,
        termination=MaxTurns(4),
        printer=None,
        timeout=600,
    )
    assert result.turns == 4 and len(result.utterances) == 4
    for e in result.utterances:
        assert e.text and not e.text.lower().startswith(("ada:", "rex:", "you are"))
        assert "\n" not in e.text
    texts = [e.text for e in result.utterances]
    assert all(similarity(a, b) < 0.8 for i, a in enumerate(texts) for b in texts[:i])
