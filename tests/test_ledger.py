"""The token ledger: kept by the model actor, read with GetLedger and in kernel().stats(),
saved with each transcript, and carried across nodes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from llmos.actors import message_fields
from llmos.agents import ChatAgent, MaxTurns, ModelSelector, run_chat
from llmos.kernel import Ledger, TokenLedger, TokenUsage, kernel, live_ledgers, merge_ledgers
from llmos.models import FakeModel, Generate, GetLedger, Score, Scores
from llmos.transport import Node

T = 10.0


def test_a_dialogue_is_charged_per_agent_dialogue_and_model(tmp_path: Path) -> None:
    fake = FakeModel.start(name="fake")
    ann = ChatAgent.start(fake, "You are Ann.", avoid_repeats=1.0, name="ann")
    bob = ChatAgent.start(fake, "You are Bob.", avoid_repeats=1.0, name="bob")
    # A request outside any dialogue is charged to its agent and model only.
    fake.ask(Generate(prompt="one two three", requester="ann"), timeout=T).get()
    result = run_chat(
        [ann, bob],
        "Tea or coffee?",
        termination=MaxTurns(4),
        printer=None,
        save_to=tmp_path / "chat",
    )
    ledger = fake.ask(GetLedger(), timeout=T).get()
    assert isinstance(ledger, Ledger)
    spoken = {n: sum(e.tokens for e in result.utterances if e.speaker == n) for n in ("ann", "bob")}
    # "ann" answered 2 turns plus the lone request (answered "ann #1: one two three", 5 words).
    assert ledger.agents["ann"].requests == 3 and ledger.agents["bob"].requests == 2
    assert ledger.agents["bob"].output_tokens == spoken["bob"]
    assert ledger.agents["ann"].output_tokens == spoken["ann"] + 5
    assert ledger.agents["ann"].input_tokens > 3 and ledger.agents["ann"].budget is None
    turns = ledger.dialogues[result.dialogue]
    assert turns.requests == 4 and turns.output_tokens == spoken["ann"] + spoken["bob"]
    assert list(ledger.dialogues) == [result.dialogue]
    fake_total = ledger.models["fake"]
    assert fake_total.requests == 5
    assert (
        fake_total.input_tokens
        == ledger.input_tokens
        == sum(u.input_tokens for u in ledger.agents.values())
    )

    # The dialogue keeps its own share and saves it with the transcript.
    assert result.ledger is not None
    assert result.ledger.dialogues == {result.dialogue: turns}
    assert result.ledger.agents["bob"] == ledger.agents["bob"]
    lines = [json.loads(line) for line in (tmp_path / "chat.jsonl").read_text().splitlines()]
    assert lines[-1]["kind"] == "end" and lines[-1]["ledger"] == result.ledger.as_dict()
    assert lines[-1]["ledger"]["models"]["fake"]["requests"] == 4
    assert "| bob |" in (tmp_path / "chat.md").read_text()

    # kernel().stats() merges the ledgers of the model actors running in this process.
    stats = kernel().stats()
    assert stats.tokens.models["fake"] == fake_total
    fake.stop()
    assert "fake" not in kernel().stats().tokens.models


def test_budgets_sit_beside_the_usage_and_ledgers_merge() -> None:
    budgets = {"ann": 100}
    ledger = TokenLedger(budgets, default_budget=50)
    ledger.charge("ann", "d1", "m", 10, 30)
    ledger.charge("", "", "m", 5, 1)
    budgets["cy"] = 7  # the owner's budget table is read at snapshot time
    snap = ledger.snapshot()
    assert snap.agents["ann"] == TokenUsage(10, 30, 1, 100) and snap.agents["ann"].remaining == 70
    assert snap.agents["anonymous"] == TokenUsage(5, 1, 1, 50)
    assert snap.agents["cy"] == TokenUsage(0, 0, 0, 7)  # a budget shows before any use
    assert snap.dialogues == {"d1": TokenUsage(10, 30, 1)}
    assert snap.models["m"].total_tokens == 46
    both = merge_ledgers([snap, snap])
    assert both.agents["ann"] == TokenUsage(20, 60, 2, 200)
    assert both.models["m"] == TokenUsage(30, 62, 4)
    assert ledger not in live_ledgers()  # registered only when asked to


def test_the_ledger_is_read_from_another_node() -> None:
    with Node(name="served") as served, Node(name="client") as client:
        FakeModel.start(name="fake")
        remote = client.ref(f"fake@{served.address}")
        remote.ask(Generate(prompt="a b", requester="x", dialogue="d"), timeout=T).get()
        ledger = remote.ask(GetLedger(), timeout=T).get()
        assert isinstance(ledger, Ledger) and isinstance(ledger.agents["x"], TokenUsage)
        assert message_fields(ledger.dialogues["d"]) == {
            "input_tokens": 2,
            "output_tokens": 4,
            "requests": 1,
            "budget": None,
        }


def test_a_score_is_charged_the_tokens_it_read() -> None:
    fake = FakeModel.start(["bob lee"], name="fake")
    # The fake reads words as a ModelActor reads tokens: the prompt (4 words), and each
    # candidate but its last word ("ann": 0, "bob lee": 1, "cy de la": 2).
    request = Score(
        ("ann", "bob lee", "cy de la"),
        prompt="who speaks next now",
        requester="sel",
        dialogue="d1",
    )
    scores = fake.ask(request, timeout=T).get()
    assert isinstance(scores, Scores) and scores.best(request.candidates) == "bob lee"
    assert scores.input_tokens == 4 + 0 + 1 + 2
    fake.ask(Score(("yes",), messages=[{"role": "user", "content": "a b"}]), timeout=T).get()
    ledger = fake.ask(GetLedger(), timeout=T).get()
    assert ledger.agents["sel"] == TokenUsage(7, 0, 1, None)
    assert ledger.agents["anonymous"] == TokenUsage(2, 0, 1, None)  # no requester, no dialogue
    assert ledger.dialogues == {"d1": TokenUsage(7, 0, 1)}
    assert ledger.models["fake"] == TokenUsage(9, 0, 2)
    assert kernel().stats().tokens.agents["sel"] == ledger.agents["sel"]


def test_a_model_selector_is_charged_to_its_chat() -> None:
    fake = FakeModel.start(name="fake")
    picker = FakeModel.start(["bob", "cy", "ann"], cycle=True, name="picker")
    team = [
        ChatAgent.start(fake, f"You are {n}.", avoid_repeats=1.0, name=n)
        for n in ("ann", "bob", "cy")
    ]
    result = run_chat(
        team, "Tea?", selector=ModelSelector(picker), termination=MaxTurns(4), printer=None
    )
    assert result.turns == 4 and not result.notes
    ledger = picker.ask(GetLedger(), timeout=T).get()
    picks = ledger.agents["selector"]
    # Turn 1 has three candidates and the model picks; later a candidate may be overdue and
    # picked without the model, so between 1 and 4 picks were scored, each reading the prompt.
    assert 1 <= picks.requests <= 4 and picks.output_tokens == 0
    assert picks.input_tokens > 20 * picks.requests  # the prompt shows task and participants
    assert ledger.dialogues == {result.dialogue: dataclasses.replace(picks, budget=None)}
    assert list(ledger.agents) == ["selector"]
    # The chat's own ledger (saved with its transcript) holds the same share beside its turns.
    assert result.ledger is not None
    own = result.ledger.agents["selector"]
    assert (own.input_tokens, own.output_tokens, own.requests) == (
        picks.input_tokens,
        0,
        picks.requests,
    )
    read = [u.input_tokens for u in result.ledger.agents.values()]
    assert sum(u.input_tokens for u in result.ledger.models.values()) == sum(read)
