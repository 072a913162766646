"""Runs of marked actors (record_actors): every message delivered to them, asks and tells,
from any sender, with its causal link; read back through RunStore and ``llmos show``."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
from transport_peer import CallBack, TellBack
from transport_support import peer_process

from llmos.actors import Actor, ActorRef, LlmosError, Reply, handler, message, tracing
from llmos.actors.lowlevel import trace_state
from llmos.agents import (
    Agent,
    AgentError,
    MaxTurns,
    RunStore,
    Turn,
    Utterance,
    record_actors,
    run_chat,
)
from llmos.cli import main
from llmos.transport import Node


@message("tests.actor_runs.Deposit")
class Deposit:
    amount: int


@message("tests.actor_runs.Post")
class Post:
    amount: int


@message("tests.actor_runs.Note")
class Note:
    text: str


class Ledger(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @handler(Post)
    def post(self, msg: Post) -> int:
        self.total += msg.amount
        return self.total


class Audit(Actor):
    """Keeps the notes it is told; sets ``done`` once it holds ``expected`` of them."""

    def __init__(self, done: threading.Event, expected: int) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.done = done
        self.expected = expected

    @handler(Note)
    def note(self, msg: Note) -> None:
        self.notes.append(msg.text)
        if len(self.notes) >= self.expected:
            self.done.set()


class Teller(Actor):
    """Asks the ledger to post a deposit, then tells the audit about it."""

    def __init__(self, ledger: ActorRef, audit: ActorRef) -> None:
        super().__init__()
        self.ledger = ledger
        self.audit = audit

    @handler(Deposit)
    def deposit(self, msg: Deposit) -> int:
        total: int = self.ledger.ask(Post(msg.amount), timeout=10).get()
        self.audit.tell(Note(f"deposit {msg.amount} -> {total}"))
        return total


class Relay(Actor):
    """Not marked: passes every Deposit it is told on to the teller."""

    def __init__(self, teller: ActorRef) -> None:
        super().__init__()
        self.teller = teller

    @handler(Deposit)
    def relay(self, msg: Deposit) -> None:
        self.teller.tell(msg)


def _rows(db: Path, run_id: str) -> list[dict[str, Any]]:
    store = RunStore(db, create=False)
    try:
        rows = store.messages(run_id)
        assert store.run(run_id)["kind"] == "actors"
    finally:
        store.close()
    for row in rows:
        row["payload"] = msgpack.unpackb(row["payload"], raw=False)
    return rows


def test_every_message_to_marked_actors_is_recorded_with_its_cause(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "runs.db"
    done = threading.Event()
    ledger = Ledger.start(name="ledger")
    audit = Audit.start(done, 3, name="audit")
    teller = Teller.start(ledger, audit, name="teller")
    relay = Relay.start(teller, name="relay")
    with record_actors(db, "bank-1", task="three deposits") as run:
        run.mark(teller, ledger, "audit")
        assert teller.ask(Deposit(5), timeout=10).get() == 5  # an ask from outside actors
        teller.tell(Deposit(7))  # a tell from outside actors
        relay.tell(Deposit(1))  # through an actor that is not marked
        assert done.wait(10)
        run.flush()
    assert trace_state.hook is None  # closed: nothing left on the message paths
    rows = _rows(db, "bank-1")
    by_key = {r["key"]: r for r in rows}
    assert len(by_key) == len(rows)
    for i, r in enumerate(rows):  # every cause recorded comes before what it caused
        if r["cause"] in by_key:
            assert rows.index(by_key[r["cause"]]) < i
    deposits = [r for r in rows if r["wire_type"] == "tests.actor_runs.Deposit"]
    assert [(r["sender"], r["receiver"], r["payload"]["amount"]) for r in deposits] == [
        ("outside:MainThread", "teller", 5),
        ("outside:MainThread", "teller", 7),
        ("relay", "teller", 1),
    ]
    assert [r["key"].split("/")[0] for r in deposits] == ["ask", "tell", "tell"]
    assert deposits[0]["cause"] == deposits[1]["cause"] == ""
    assert deposits[2]["cause"].startswith("tell/")  # the relay's own delivery: not recorded
    assert deposits[2]["cause"] not in by_key
    for deposit in deposits:
        post = next(r for r in rows if r["cause"] == deposit["key"] and r["receiver"] == "ledger")
        assert (post["sender"], post["wire_type"], post["key"][:4]) == (
            "teller",
            "tests.actor_runs.Post",
            "ask/",
        )
        assert post["payload"]["amount"] == deposit["payload"]["amount"]
        answer = by_key["reply/" + post["key"][4:]]
        assert (answer["sender"], answer["receiver"], answer["cause"]) == (
            "ledger",
            "teller",
            post["key"],
        )
        note = next(r for r in rows if r["cause"] == deposit["key"] and r["receiver"] == "audit")
        assert (note["sender"], note["wire_type"], note["key"][:5]) == (
            "teller",
            "tests.actor_runs.Note",
            "tell/",
        )
        assert (
            note["payload"]["text"]
            == f"deposit {deposit['payload']['amount']} -> {answer['payload']}"
        )
    assert [
        by_key["reply/" + p["key"][4:]]["payload"] for p in rows if p["receiver"] == "ledger"
    ] == [
        5,
        12,
        13,
    ]
    assert by_key["reply/" + deposits[0]["key"][4:]]["receiver"] == "outside:MainThread"
    assert all(r["at"] > 0 for r in rows)
    assert len(rows) == 3 + 3 + 3 + 3 + 1  # deposits, posts, their answers, notes, one answer
    assert main(["show", str(db), "bank-1"]) == 0
    shown = capsys.readouterr().out
    assert "run bank-1: actors (audit, ledger, teller)" in shown
    assert f"{len(rows)} messages" in shown
    table = [ln.split() for ln in shown.splitlines()[4:]]
    assert [t[5] for t in table if len(t) == 7].count("tests.actor_runs.Note") == 3
    assert (
        "outside:MainThread" in shown and '{"amount": 7, "@": "tests.actor_runs.Deposit"}' in shown
    )
    assert main(["runs", str(db)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:4] == [
        "bank-1",
        "actors",
        "ended",
        "13",
    ]


def test_unmarked_actors_record_nothing_and_the_slot_is_exclusive(tmp_path: Path) -> None:
    ledger = Ledger.start(name="ledger")
    with record_actors(tmp_path / "runs.db", "r") as run:
        with pytest.raises(AgentError, match="another trace hook is in place"):
            record_actors(tmp_path / "other.db", "other")
        other = RunStore(tmp_path / "other.db")
        try:
            assert other.runs() == []  # refused before it began a run
        finally:
            other.close()
        with pytest.raises(LlmosError, match="run recorder"):
            tracing.enable(exporter="console")
        assert not tracing.enabled()  # what holds the hook is no tracer
        assert ledger.ask(Post(1), timeout=10).get() == 1
        run.mark(ledger)
        assert ledger.ask(Post(2), timeout=10).get() == 3
        peer_trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"  # a peer tracing
        posted: Reply[Any] = Reply(time.monotonic() + 10)
        ledger.post(Post(0), posted, trace=peer_trace)  # as the transport delivers it
        assert posted.get() == 3
        run.unmark("ledger")
        assert ledger.ask(Post(3), timeout=10).get() == 6
    rows = _rows(tmp_path / "runs.db", "r")
    assert [(r["key"][:4], r["sender"], r["payload"]) for r in rows] == [
        ("ask/", "outside:MainThread", {"amount": 2, "@": "tests.actor_runs.Post"}),
        ("repl", "ledger", 3),
        ("ask/", "(another node)", {"amount": 0, "@": "tests.actor_runs.Post"}),
    ]


class Probe(Actor):
    def __init__(self, seen: threading.Event) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        if message == "told":
            self.seen.set()
        return message * 2 if isinstance(message, int) else None


@pytest.mark.multiprocess
def test_messages_from_another_node_are_recorded(tmp_path: Path) -> None:
    seen = threading.Event()
    with peer_process() as peer, Node("tcp://127.0.0.1:0", heartbeat=1.0) as node:
        probe = Probe.start(seen, name="probe")
        echo = node.ref(f"echo@{peer.address}")
        with record_actors(tmp_path / "runs.db", "remote") as run:
            run.mark(probe)
            assert echo.ask(CallBack(probe, 21), timeout=10).get() == 42  # an ask from there
            assert echo.ask(TellBack(probe, "told"), timeout=10).get() == "told"  # a tell
            assert seen.wait(10)
        probe.stop(timeout=10)
    rows = _rows(tmp_path / "runs.db", "remote")
    assert [(r["key"][:4], r["sender"], r["receiver"], r["payload"]) for r in rows] == [
        ("ask/", "(another node)", "probe", 21),
        ("tell", "(another node)", "probe", "told"),
    ]
    assert all(r["cause"] == "" for r in rows)


class Announcer(Agent):
    """Speaks its turn number and tells the audit about it."""

    def __init__(self, audit: ActorRef) -> None:
        super().__init__()
        self.audit = audit

    @handler(Turn)
    def speak(self, msg: Turn) -> Utterance:
        self.tell_agent(self.audit, Note(f"{self.agent_name} spoke at turn {msg.turn}"))
        return Utterance(self.agent_name, f"turn {msg.turn} from {self.agent_name}.")


def test_tell_agent_in_a_recorded_chat_is_recorded(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    done = threading.Event()
    audit = Audit.start(done, 3, name="audit")
    ann = Announcer.start(audit, name="ann")
    bob = Announcer.start(audit, name="bob")
    result = run_chat([ann, bob], "count", record=db, termination=MaxTurns(3), printer=None)
    assert result.turns == 3 and done.wait(10)
    store = RunStore(db, create=False)
    try:
        tells = [m for m in store.messages(result.run_id) if "/tell/" in m["key"]]
    finally:
        store.close()
    assert [(m["key"], m["cause"], m["sender"], m["receiver"], m["wire_type"]) for m in tells] == [
        (f"turn/{t}/1/tell/1", f"turn/{t}/1", s, "audit", "tests.actor_runs.Note")
        for t, s in ((1, "ann"), (2, "bob"), (3, "ann"))
    ]
    assert msgpack.unpackb(tells[1]["payload"], raw=False)["text"] == "bob spoke at turn 2"
