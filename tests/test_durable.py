"""Durable runs: recording to SQLite, resume after kill -9 (real subprocesses, real SIGKILL),
replay from the log, and a damaged log's one clear error."""

from __future__ import annotations

import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from durable_run import reply_for, setup
from durable_support import TURNS, Child, check_run, reference_transcript, resume_until_done

from llmos.actors import get as actors_get
from llmos.actors import stop_all
from llmos.agents import (
    ChatAgent,
    ChatSetup,
    GroupChat,
    MaxTurns,
    ModelSelector,
    Recording,
    RunLogError,
    RunStore,
    replay_chat,
    run_chat,
    transcript_text,
)
from llmos.agents._divergence import find_divergence
from llmos.models import FakeModel, GetModelStats, ModelError, Tokenize


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The transcript of the same dialogue, recorded without interruption."""
    return reference_transcript(tmp_path_factory.mktemp("ref") / "ref.db")


def test_records_messages_model_calls_and_entries(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = setup(4)
    result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    store = RunStore(db, create=False)
    try:
        assert store.query("PRAGMA journal_mode")[0][0] == "wal"
        run = store.run(result.run_id)
        assert (run["status"], run["turns"], run["participants"]) == ("ended", 4, ["ann", "bob"])
        messages = store.messages(result.run_id)
        chat = result.dialogue
        assert [(m["key"], m["cause"], m["sender"], m["receiver"]) for m in messages[:4]] == [
            ("turn/1/1", "start", chat, "ann"),
            ("reply/1/1", "turn/1/1", "ann", chat),
            ("turn/2/1", "reply/1/1", chat, "bob"),
            ("reply/2/1", "turn/2/1", "bob", chat),
        ]
        assert messages[0]["wire_type"] == "llmos.agents.Turn"
        assert messages[1]["wire_type"] == "llmos.agents.Utterance"
        calls = store.calls(result.run_id)
        assert calls and calls[0]["request_type"] == "llmos.model.Generate"
        assert calls[0]["reply_type"] == "llmos.model.Completion"
        assert (calls[0]["agent"], calls[0]["turn"], calls[0]["cause"]) == ("ann", 1, "turn/1/1")
        assert transcript_text(store.entries(result.run_id)) == transcript_text(result.transcript)
    finally:
        store.close()


def test_kill_during_generation_then_resume(tmp_path: Path, reference: bytes) -> None:
    db = tmp_path / "runs.db"
    child = Child("record", str(db), "gen", "--turns", str(TURNS), slow_at=5)
    child.wait_for(lambda ln: ln == "gen 5")  # the 5th model call hangs: kill it mid-way
    child.kill()
    resume_until_done(db, "gen")
    check_run(db, "gen", reference)


def test_kill_between_turns_then_resume(tmp_path: Path, reference: bytes) -> None:
    db = tmp_path / "runs.db"
    child = Child("record", str(db), "between", "--turns", str(TURNS))
    child.wait_for(lambda ln: ln.startswith("bob:") and "gen 4" in child.seen)
    child.kill()
    resume_until_done(db, "between")
    check_run(db, "between", reference)


def test_kill_during_a_write_then_resume(tmp_path: Path, reference: bytes) -> None:
    """Killed with a batch's rows inserted and not committed: the log keeps the batches
    before it, and the resumed run takes the lost turns again."""
    db = tmp_path / "runs.db"
    child = Child(
        "record",
        str(db),
        "write",
        "--turns",
        str(TURNS),
        DURABLE_DELAY="0.03",
        DURABLE_STALL_WRITE="2",
    )
    child.wait_for(lambda ln: ln == "writing 2")
    child.kill()
    store = RunStore(db, create=False)
    try:
        kept = [e["turn"] for e in store.entries("write") if e["kind"] == "utterance"]
    finally:
        store.close()
    assert len(kept) < TURNS and kept == list(range(1, len(kept) + 1))  # a committed prefix
    resume_until_done(db, "write")
    check_run(db, "write", reference)


def test_kill_at_random_points_including_writes(tmp_path: Path, reference: bytes) -> None:
    """Kills at random moments (mid-batch commits among them), the resumes killed too."""
    rng = random.Random(17)
    for i in range(4):
        db = tmp_path / f"runs{i}.db"
        child = Child("record", str(db), "r", "--turns", str(TURNS))
        child.wait_for(lambda ln: ln.startswith("gen"))
        threading.Event().wait(rng.uniform(0.0, 0.1))
        if child.proc.poll() is None:
            child.kill(may_have_ended=True)
        if _status(db) == "running" and rng.random() < 0.5:
            again = Child("resume", str(db), "r")
            again.wait_for(lambda ln: ln.startswith("gen") or ln.startswith("done"))
            threading.Event().wait(rng.uniform(0.0, 0.05))
            if again.proc.poll() is None:
                again.kill(may_have_ended=True)
        if _status(db) == "":  # killed before the run was written: start it again
            Child("record", str(db), "r", "--turns", str(TURNS)).finish()
        if _status(db) != "ended":
            resume_until_done(db, "r")
        check_run(db, "r", reference)


def _status(db: Path) -> str:
    """The run's status ("" when the process died before it was written)."""
    if not db.exists():
        return ""
    store = RunStore(db, create=False)
    try:
        found = [r["status"] for r in store.runs() if r["run_id"] == "r"]
    finally:
        store.close()
    return found[0] if found else ""


def test_replay_is_byte_identical_and_live_reports_the_divergence(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = setup(6)
    result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    stop_all(timeout=10)
    replay = replay_chat(db, result.run_id, setup=setup(6))
    assert replay.identical and replay.first_difference is None
    assert replay.served >= 6
    assert transcript_text(replay.result.transcript) == transcript_text(result.transcript)
    stop_all(timeout=10)

    live = replay_chat(db, result.run_id, live=True, setup=setup(6))
    assert live.identical and live.divergence is None  # the same model, the same answers
    stop_all(timeout=10)

    other = setup(6)  # another model from turn 3 on: the live replay says where it parts
    stop_all(timeout=10)
    outputs = iter(["Tea please.", "Coffee please.", "Milk please, and sugar too."])
    model = FakeModel.start(lambda _m: next(outputs, "More."), name="model")
    ann = ChatAgent.start(model, "You are Ann.", name="ann")
    bob = ChatAgent.start(model, "You are Bob.", name="bob")
    changed = ChatSetup([ann, bob], other.task, other.chat_class, other.options)
    live = replay_chat(db, result.run_id, live=True, setup=changed)
    assert not live.identical and live.first_difference is not None
    assert live.divergence is not None and live.divergence.turn == 1
    assert live.divergence.agent == "ann" and live.divergence.token == 0
    assert live.divergence.word == 0 and live.divergence.live_tokens[0] == "Tea"


def test_live_replay_names_the_first_differing_token(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = setup(2)
    result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    stop_all(timeout=10)

    def parting(messages: list[dict[str, Any]]) -> str:  # the log's first 3 words, then not
        return " ".join([*reply_for(messages).split()[:3], "otherwise", "entirely."])

    model = FakeModel.start(parting, name="model")
    ann = ChatAgent.start(model, "You are Ann.", name="ann")
    bob = ChatAgent.start(model, "You are Bob.", name="bob")
    live = replay_chat(
        db, result.run_id, live=True, setup=ChatSetup([ann, bob], s.task, s.chat_class, s.options)
    )
    d = live.divergence
    assert d is not None and (d.turn, d.agent, d.token, d.word) == (1, "ann", 3, 3)
    logged = d.logged.split()
    assert d.live_tokens == ("otherwise", "entirely.")
    assert d.logged_tokens == tuple(logged[3:]) and d.live.split()[:3] == logged[:3]


def test_a_damaged_log_gives_one_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = setup(4)
    run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    stop_all(timeout=10)
    size = db.stat().st_size
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0
    with db.open("r+b") as f:
        f.truncate(size // 2)
    damaged = db.read_bytes()
    with pytest.raises(RunLogError, match=str(db)):
        RunStore(db)
    s = setup(4)
    with pytest.raises(RunLogError, match=str(db)):
        run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    assert db.read_bytes() == damaged  # nothing written to it
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RunLogError, match=str(garbage)):
        RunStore(garbage)
    assert sqlite3.sqlite_version  # (the stdlib sqlite3, nothing else)


def _trio(picks: list[str]) -> ChatSetup:
    model = FakeModel.start(reply_for, name="model")
    picker = FakeModel.start(picks, cycle=True, name="picker")
    agents = [ChatAgent.start(model, f"You are {n}.", name=n) for n in ("ann", "bob", "cy")]
    options = {
        "selector": ModelSelector(picker, max_wait=5),
        "termination": MaxTurns(6),
        "printer": None,
    }
    return ChatSetup(agents, "Tea or coffee?", GroupChat, options)


def test_a_group_chat_replays_its_selector_picks_from_the_log(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = _trio(["cy", "bob", "cy", "ann", "bob", "ann"])
    result = run_chat(s.participants, s.task, chat_class=s.chat_class, record=db, **s.options)
    assert result.speakers == ["cy", "bob", "cy", "ann", "bob", "ann"]
    stop_all(timeout=10)
    s = _trio(["ann"])  # a picker that would choose otherwise: the log's picks are served
    replay = replay_chat(db, result.run_id, setup=s)
    assert replay.identical and replay.result.speakers == result.speakers
    stats = actors_get("picker").ask(GetModelStats(), timeout=5).get()
    assert stats.requests == 0


def test_a_log_that_fails_mid_run_is_reported_in_the_result(tmp_path: Path) -> None:
    """From the 3rd model call on the process may not grow a file (RLIMIT_FSIZE, as a full
    disk): the log's next commit fails for real; the chat ends all the same and says so."""
    db = tmp_path / "runs.db"
    child = Child("record", str(db), "full", "--turns", "6", DURABLE_FILE_LIMIT_AT="3")
    done = child.finish()
    assert done == "done 6 MaxTurns"
    error = child.wait_for(lambda ln: ln.startswith("log error: "), timeout=5)[len("log error: ") :]
    assert str(db) in error and "cannot write to run log" in error, error
    assert "file limit" in " ".join(child.seen)
    store = RunStore(db, create=False)  # what was committed before the failure is intact
    try:
        run = store.run("full")
        turns = [e["turn"] for e in store.entries("full") if e["kind"] == "utterance"]
    finally:
        store.close()
    assert run["status"] == "running"  # its end could not be written either: resumable
    assert turns == list(range(1, len(turns) + 1)) and len(turns) < 6, turns


def test_a_run_log_that_took_every_row_reports_no_error(tmp_path: Path) -> None:
    s = setup(2)
    result = run_chat(
        s.participants, s.task, chat_class=s.chat_class, record=tmp_path / "r.db", **s.options
    )
    assert result.run_id and result.run_log_error == ""


def test_a_log_actor_gone_for_good_is_a_run_log_error_naming_the_file(tmp_path: Path) -> None:
    rec = Recording.open(tmp_path / "gone.db", "run-1")
    try:
        assert rec.logger is not None
        rec.flush()  # alive: nothing to report
        rec.logger.stop()
        with pytest.raises(RunLogError, match=r"gone\.db.*log actor is gone"):
            rec.flush()
    finally:
        rec.close()


def test_a_model_tokenizes_texts_and_a_non_model_leaves_the_word(tmp_path: Path) -> None:
    model = FakeModel.start(lambda _m: "Fine.", name="model")
    tokens = model.ask(Tokenize(("tea with milk", "")), timeout=10).get()
    assert tokens.pieces == [["tea", "with", "milk"], []] and len(tokens.ids[0]) == 3
    with pytest.raises(ModelError, match=r"Tokenize\.texts"):
        model.ask(Tokenize("not a tuple"), timeout=10).get()  # type: ignore[arg-type]
    ann = ChatAgent.start(model, "You are Ann.", name="ann")  # an agent cannot tokenize
    d = find_divergence(2, "bob", "tea with milk", "tea with lemon", ann)
    assert d is not None and (d.turn, d.agent, d.token, d.word) == (2, "bob", None, 2)
    assert find_divergence(2, "bob", "same", "same", model) is None
