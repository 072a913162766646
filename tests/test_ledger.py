"""The token ledger: kept by the model actor, read with GetLedger and in kernel().stats(),
saved with each transcript, and carried across nodes."""

from __future__ import annotations

import json
from pathlib import Path

from llmos.actors import message_fields
from llmos.agents import ChatAgent, MaxTurns, run_chat
from llmos.kernel import Ledger, TokenLedger, TokenUsage, kernel, live_ledgers, merge_ledgers
from llmos.models import FakeModel, Generate, GetLedger
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
