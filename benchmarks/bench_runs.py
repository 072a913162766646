"""Durable runs: what recording a dialogue costs, what it takes on disk, how fast it resumes.

A dialogue of two ChatAgents on a fake model (a reply drawn from a hash of the prompt, so no
model time hides the recording's cost) runs ``--turns`` turns (1,000 by default), with
recording off and on (``record=FILE``, a fresh SQLite file each time), in alternating blocks
so both sides see the same machine. Figures:

- wall time of a dialogue, off and on: min / median / max over ``--rounds`` rounds, and the
  ratio of the medians and of the minimums (goal: on <= 1.10 x off); the same for the CPU
  time of the process (all its threads), which other users of a shared machine disturb less;
- bytes per turn: the run log's file size (after the WAL is checkpointed) / turns, and the
  recorded rows' own bytes / turns;
- resume: the time to resume a recorded ``--turns``-turn run: fresh agents take in every
  recorded turn from the log, then take one more turn live (min / median / max).

The load average is printed beside the figures: on a shared machine, read them with it.

``--live-batching`` instead runs the case a live replay is for, on the real default model:
``--dialogues`` dialogues recorded at once through one model actor (their requests batched),
then the first one replayed live alone (batch size 1); it prints where the live run first
diverges from the recording (turn, model token and word), or that it never does.

``--actors`` instead measures a run of marked plain actors (``record_actors``): ``--turns``
deposits, each an ask from outside to a teller, its ask to a ledger and its tell to an audit
(3 messages delivered, 2 answers), with no recorder, with a recorder open and nothing marked
(every message carries a context), and with all three actors marked (every message recorded):
wall time min / median / max and the ratios of the medians, in alternating blocks.

Run: ``python benchmarks/bench_runs.py [--turns 1000] [--rounds 5] [--json FILE]``,
``python benchmarks/bench_runs.py --live-batching [--dialogues 3] [--turns 4]`` or
``python benchmarks/bench_runs.py --actors [--turns 2000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import llmos.actors as actors
from llmos.actors import Actor, ActorRef, handler, message
from llmos.agents import (
    ChatAgent,
    ChatSetup,
    Dialogue,
    MaxTurns,
    RunStore,
    record_actors,
    resume_chat,
    run_chat,
)
from llmos.models import FakeModel

WORDS = "tea coffee water milk sugar cup pot morning bitter sweet strong warm green black".split()


def reply_for(messages: list[dict[str, Any]]) -> str:
    h = zlib.crc32(json.dumps(messages[-2:], sort_keys=True).encode())
    return " ".join(WORDS[(h >> (2 * i)) % len(WORDS)] for i in range(8)).capitalize() + "."


def setup(turns: int) -> ChatSetup:
    model = FakeModel.start(reply_for, name="model")
    ann = ChatAgent.start(model, "You are Ann.", name="ann", avoid_repeats=1.0)
    bob = ChatAgent.start(model, "You are Bob.", name="bob", avoid_repeats=1.0)
    options: dict[str, Any] = {
        "termination": MaxTurns(turns),
        "max_turns": turns + 1,
        "printer": None,
        "note_repeats": 0,
    }
    return ChatSetup([ann, bob], "Tea or coffee?", Dialogue, options)


def one_dialogue(turns: int, record: Path | None) -> tuple[float, float, str]:
    """Wall and CPU seconds (all threads of the process) of one dialogue, and its run id."""
    s = setup(turns)
    try:
        extra: dict[str, Any] = {"record": record} if record is not None else {}
        start, cpu = time.perf_counter(), time.process_time()
        result = run_chat(
            s.participants, s.task, chat_class=s.chat_class, timeout=600, **extra, **s.options
        )
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        actors.stop_all(timeout=10)
    if result.turns != turns:
        raise SystemExit(f"the dialogue took {result.turns} turns, not {turns}: {result.reason}")
    return seconds, cpu, result.run_id


def resume_once(db: Path, run_id: str, turns: int) -> float:
    store = RunStore(db)
    try:
        with store.transaction() as conn:  # as if the process had died after the last turn
            conn.execute("UPDATE runs SET status='running' WHERE run_id=?", (run_id,))
    finally:
        store.close()
    s = setup(turns + 1)
    try:
        start = time.perf_counter()
        result = resume_chat(db, run_id, setup=s, timeout=600)
        seconds = time.perf_counter() - start
    finally:
        actors.stop_all(timeout=10)
    if result.turns != turns + 1:
        raise SystemExit(f"the resumed run took {result.turns} turns, not {turns + 1}")
    return seconds


def real_setup(index: int, turns: int, model: Any) -> ChatSetup:
    ada = ChatAgent.start(model, "You are Ada, a cheerful baker.", name=f"ada{index}")
    rex = ChatAgent.start(model, "You are Rex, a grumpy farmer.", name=f"rex{index}")
    options: dict[str, Any] = {"termination": MaxTurns(turns), "printer": None}
    return ChatSetup([ada, rex], f"Bread or cake? (table {index})", Dialogue, options)


def live_batching(dialogues: int, turns: int) -> int:
    """Record dialogues batched together, replay the first live alone, report divergence."""
    import threading

    from llmos.agents import replay_chat
    from llmos.models import GetModelStats, ModelActor

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "runs.db"
        model = ModelActor.start(name="model")
        setups = [real_setup(i, turns, model) for i in range(dialogues)]
        run_ids: list[str] = [""] * dialogues

        def one(i: int) -> None:
            s = setups[i]
            result = run_chat(
                s.participants,
                s.task,
                chat_class=s.chat_class,
                record=db,
                timeout=900,
                **s.options,
            )
            run_ids[i] = result.run_id

        threads = [threading.Thread(target=one, args=(i,)) for i in range(dialogues)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = model.ask(GetModelStats(), timeout=10).get()
        actors.stop_all(timeout=10)
        model = ModelActor.start(name="model")
        replay = replay_chat(db, run_ids[0], live=True, setup=real_setup(0, turns, model))
        alone = model.ask(GetModelStats(), timeout=10).get()
        actors.stop_all(timeout=10)
    print(
        f"recorded {dialogues} dialogues of {turns} turns at once: mean batch size "
        f"{stats.mean_batch_size:.2f}; live replay of the first alone: mean batch size "
        f"{alone.mean_batch_size:.2f}"
    )
    d = replay.divergence
    if d is None:
        print("live replay: the model gave the recorded output at every call")
    else:
        print(
            f"live replay: first divergence at turn {d.turn} ({d.agent}), token {d.token} "
            f"(word {d.word}; tokens from there: logged {d.logged_tokens!r}, live "
            f"{d.live_tokens!r}): "
            f"logged {d.logged!r}, live {d.live!r}"
        )
    print(f"transcript identical: {replay.identical}; load average: {os.getloadavg()}")
    return 0


@message("bench.runs.Deposit")
class Deposit:
    amount: int


@message("bench.runs.Post")
class Post:
    amount: int


class Ledger(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @handler(Post)
    def post(self, msg: Post) -> int:
        self.total += msg.amount
        return self.total

    def on_receive(self, message: object) -> object:
        return self.total  # the audit's tells and the final count


class Teller(Actor):
    def __init__(self, ledger: ActorRef, audit: ActorRef) -> None:
        super().__init__()
        self.ledger, self.audit = ledger, audit

    @handler(Deposit)
    def deposit(self, msg: Deposit) -> int:
        total: int = self.ledger.ask(Post(msg.amount), timeout=30).get()
        self.audit.tell(total)
        return total


def actor_round(deposits: int, mode: str, folder: Path, i: int) -> float:
    """Seconds for ``deposits`` deposits: mode "off", "open" (nothing marked) or "marked"."""
    ledger = Ledger.start(name="ledger")
    audit = Ledger.start(name="audit")
    teller = Teller.start(ledger, audit, name="teller")
    run = record_actors(folder / f"actors{i}-{mode}.db") if mode != "off" else None
    try:
        if run is not None and mode == "marked":
            run.mark(ledger, audit, teller)
        start = time.perf_counter()
        for n in range(deposits):
            teller.ask(Deposit(n), timeout=30).get()
        audit.ask("count", timeout=30).get()  # after the audit's tells
        seconds = time.perf_counter() - start
    finally:
        if run is not None:
            run.close()
        actors.stop_all(timeout=10)
    return seconds


def actors_bench(deposits: int, rounds: int) -> int:
    times: dict[str, list[float]] = {"off": [], "open": [], "marked": []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        actor_round(100, "marked", Path(tmp), -1)  # warm up
        for i in range(rounds):
            modes = list(times) if i % 2 == 0 else list(reversed(times))
            for mode in modes:
                times[mode].append(actor_round(deposits, mode, Path(tmp), i))
    load = os.getloadavg()
    base = statistics.median(times["off"])
    print(f"{deposits} deposits (3 messages delivered, 2 answers each), {rounds} rounds")
    for mode, values in times.items():
        ratio = statistics.median(values) / base
        per = statistics.median(values) / deposits * 1e6
        print(f"  {mode:7} {spread(values)}; {per:.1f} us per deposit; {ratio:.2f} x off")
    print(
        "load average before: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + " ".join(f"{x:.2f}" for x in load)
        + f" ({os.cpu_count()} cpus)"
    )
    return 0


def spread(values: list[float]) -> str:
    return (
        f"min {min(values):.3f} s, median {statistics.median(values):.3f} s, "
        f"max {max(values):.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--live-batching", action="store_true")
    parser.add_argument("--dialogues", type=int, default=3)
    parser.add_argument("--actors", action="store_true")
    args = parser.parse_args(argv)
    if args.live_batching:
        return live_batching(args.dialogues, args.turns)
    if args.actors:
        return actors_bench(args.turns, args.rounds)
    off: list[float] = []
    on: list[float] = []
    off_cpu: list[float] = []
    on_cpu: list[float] = []
    resumes: list[float] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        one_dialogue(50, None)  # warm up: imports, first threads
        last: tuple[Path, str] | None = None
        for i in range(args.rounds):
            order = (False, True) if i % 2 == 0 else (True, False)
            for recording in order:
                db = Path(tmp) / f"runs{i}.db"
                seconds, cpu, run_id = one_dialogue(args.turns, db if recording else None)
                (on if recording else off).append(seconds)
                (on_cpu if recording else off_cpu).append(cpu)
                if recording:
                    last = (db, run_id)
        assert last is not None
        db, run_id = last
        store = RunStore(db)
        try:
            rows = store.size(run_id)
        finally:
            store.close()
        file_bytes = db.stat().st_size
        for _ in range(max(3, args.rounds // 2)):
            resumes.append(resume_once(db, run_id, args.turns))
            args.turns += 1  # each resume took one more turn
    turns = args.turns - len(resumes)
    load = os.getloadavg()
    ratio_median = statistics.median(on) / statistics.median(off)
    ratio_min = min(on) / min(off)
    print(f"dialogue of {turns} turns, fake model, {args.rounds} rounds, alternating blocks")
    print(f"  recording off: {spread(off)}")
    print(f"  recording on:  {spread(on)}")
    print(f"  on / off: {ratio_median:.3f} (medians), {ratio_min:.3f} (minimums); goal <= 1.10")
    cpu_median = statistics.median(on_cpu) / statistics.median(off_cpu)
    cpu_min = min(on_cpu) / min(off_cpu)
    print(f"  CPU time (all threads), off: {spread(off_cpu)}")
    print(f"  CPU time (all threads), on:  {spread(on_cpu)}")
    print(f"  CPU on / off: {cpu_median:.3f} (medians), {cpu_min:.3f} (minimums)")
    print(f"  bytes per turn: {file_bytes / turns:.0f} (file), {rows / turns:.0f} (recorded rows)")
    print(f"resume of a {turns}-turn run (+1 live turn): {spread(resumes)}")
    print(
        "load average before: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + "; after: "
        + " ".join(f"{x:.2f}" for x in load)
        + f" ({os.cpu_count()} cpus)"
    )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "turns": turns,
                    "off": off,
                    "on": on,
                    "ratio_median": ratio_median,
                    "ratio_min": ratio_min,
                    "off_cpu": off_cpu,
                    "on_cpu": on_cpu,
                    "file_bytes_per_turn": file_bytes / turns,
                    "row_bytes_per_turn": rows / turns,
                    "resume_seconds": resumes,
                    "load": list(load),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
