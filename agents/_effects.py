"""Exactly-once side effects: a journal that records an effect's intent before it runs and its
result after, so a resumed run never performs a finished effect again.

An effect is keyed by run, agent, turn, name, arguments and its order among that agent's
effects in the turn. :meth:`EffectJournal.perform`:

1. a ``done`` effect is not run again: its recorded result is returned (a ``failed`` one raises
   its recorded error again);
2. otherwise the intent is committed (state ``started``, fsynced) before ``fn`` runs, and the
   result (state ``done``) after it returns;
3. an effect found ``started`` was cut off between the two: the process died while it ran, and
   nobody knows whether it took place. The rule:

   - an effect declared ``idempotent=True`` runs again with the same key; ``fn`` receives the
     key and must pass it on to the system it changes (an idempotency key: a bank, a payment
     API, a file named by the key), which applies it once whatever the number of calls;
   - any other effect raises :class:`EffectInDoubt` and the run stops for a decision: look at
     the outside world, then :meth:`EffectJournal.resolve` it as done (with its result) or not
     done (it runs again on resume); ``llmos effects FILE RUN_ID`` lists such effects.

Writes are immediate (not batched through the log actor): an effect's intent must be on disk
before the effect starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from llmos.agents._errors import AgentError
from llmos.agents._runstore import RunLogError, RunStore, pack, unpack

__all__ = ["EffectFn", "EffectInDoubt", "EffectJournal", "EffectRecord", "effect_key"]

EffectFn = Callable[[dict[str, Any], str], Any]
"""An effect: ``fn(args, key) -> result`` (a msgpack-able value); ``key`` is its stable key."""


class EffectInDoubt(AgentError):
    """Raised when an effect that is not idempotent was started and never recorded as finished
    (the process died while it ran): it may or may not have taken place.

    The run stops; decide with :meth:`EffectJournal.resolve` (or ``llmos effects``) and resume.

    Attributes:
        key: the effect's key.
        name: the effect's name.
        arguments: its arguments.
    """

    def __init__(self, text: str, key: str, name: str, arguments: dict[str, Any]) -> None:
        super().__init__(text)
        self.key, self.name, self.arguments = key, name, arguments


@dataclasses.dataclass(frozen=True, slots=True)
class EffectRecord:
    """One journalled effect.

    Attributes:
        key: its key (run, agent, turn, name, order, hash of the arguments).
        agent: who performed it.
        turn: in which turn.
        name: what it is.
        args: its arguments.
        state: "started" (in doubt if the run is not running), "done" or "failed".
        result: its result when done.
        error: what it raised when failed.
    """

    key: str
    agent: str
    turn: int
    name: str
    args: dict[str, Any]
    state: str
    result: Any
    error: str


def effect_key(
    run_id: str, agent: str, turn: int, order: int, name: str, args: Mapping[str, Any]
) -> str:
    """The stable key of an effect: the same run, agent, turn, order, name and arguments give
    the same key however often the run is resumed, and no other effect has it."""
    digest = hashlib.sha256(pack(dict(sorted(args.items())))).hexdigest()[:16]
    return f"{run_id}/{agent}/{turn}/{order}/{name}/{digest}"


class EffectJournal:
    """The effects of one run, in its run log.

    Args:
        path: the run log (SQLite) file.
        run_id: the run.
        replay: perform nothing: answer done effects from the journal, refuse the others
            (a replay never repeats a side effect).

    Raises:
        RunLogError: the file cannot be opened (see :class:`~llmos.agents.RunStore`).
    """

    def __init__(self, path: str | os.PathLike[str], run_id: str, *, replay: bool = False) -> None:
        self.store = RunStore(path, durable=True)
        self.run_id = run_id
        self.replay = replay

    def perform(
        self,
        agent: str,
        turn: int,
        name: str,
        args: Mapping[str, Any],
        fn: EffectFn,
        *,
        idempotent: bool = False,
        order: int = 1,
    ) -> Any:
        """Perform an effect at most once per key (see the module's rule), return its result.

        Args:
            agent: who performs it.
            turn: the turn it belongs to.
            name: what it is ("transfer", "send_mail", ...).
            args: its arguments (msgpack-able); part of the key.
            fn: ``fn(args, key) -> result``.
            idempotent: ``fn`` applies a key once however often it is called, so an effect
                cut off mid-way may simply run again.
            order: its place among the agent's effects in the turn (1, 2, ...).

        Raises:
            EffectInDoubt: a non-idempotent effect was cut off before; decide, then resume.
            AgentError: it failed when first run (its recorded error), or a replay met an
                effect the journal has not finished.
            RunLogError: the journal cannot be written.
        """
        plain = dict(args)
        key = effect_key(self.run_id, agent, turn, order, name, plain)
        found = self.store.query(
            "SELECT state, result, error FROM effects WHERE run_id=? AND key=?",
            (self.run_id, key),
        )
        if found:
            state, result, error = found[0]
            if state == "done":
                return unpack(result)
            if state == "failed":
                raise AgentError(f"effect {key} failed when first run: {error}")
            if self.replay:
                raise AgentError(f"effect {key} never finished in the recorded run; not replayed")
            if not idempotent:
                raise EffectInDoubt(
                    f"effect {key} ({name} {plain!r}) was started and never recorded as finished: "
                    "it may or may not have happened. Check, then resolve it (`llmos effects "
                    f"{self.store.path} {self.run_id} --done KEY` or --redo KEY) and resume",
                    key,
                    name,
                    plain,
                )
        elif self.replay:
            raise AgentError(f"effect {key} is not in the recorded run; a replay performs none")
        else:
            with self.store.transaction() as db:
                db.execute(
                    "INSERT INTO effects VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        self.run_id,
                        key,
                        agent,
                        turn,
                        name,
                        pack(plain),
                        "started",
                        None,
                        "",
                        time.time(),
                        None,
                    ),
                )
        try:
            result = fn(plain, key)
        except Exception as exc:
            self._finish(key, "failed", None, f"{type(exc).__name__}: {exc}")
            raise
        self._finish(key, "done", pack(result), "")
        return result

    def _finish(self, key: str, state: str, result: bytes | None, error: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "UPDATE effects SET state=?, result=?, error=?, finished=? "
                "WHERE run_id=? AND key=?",
                (state, result, error, time.time(), self.run_id, key),
            )

    def records(self) -> list[EffectRecord]:
        """Every effect of the run, in the order they were started."""
        rows = self.store.query(
            "SELECT key, agent, turn, name, args, state, result, error FROM effects "
            "WHERE run_id=? ORDER BY started",
            (self.run_id,),
        )
        return [
            EffectRecord(k, a, t, n, unpack(args), s, unpack(r), e)
            for k, a, t, n, args, s, r, e in rows
        ]

    def in_doubt(self) -> list[EffectRecord]:
        """The effects started and never finished."""
        return [r for r in self.records() if r.state == "started"]

    def resolve(self, key: str, *, done: bool, result: Any = None) -> None:
        """Decide an effect in doubt: ``done`` (it took place; ``result`` is what it returned)
        or not (it is forgotten, and runs again when the run resumes).

        Raises:
            RunLogError: no such effect in doubt.
        """
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT state FROM effects WHERE run_id=? AND key=?", (self.run_id, key)
            ).fetchone()
            if row is None or row[0] != "started":
                raise RunLogError(
                    f"run log {str(self.store.path)!r}, run {self.run_id!r}: no effect in doubt "
                    f"has key {key!r}"
                )
            if done:
                db.execute(
                    "UPDATE effects SET state='done', result=?, finished=? "
                    "WHERE run_id=? AND key=?",
                    (pack(result), time.time(), self.run_id, key),
                )
            else:
                db.execute("DELETE FROM effects WHERE run_id=? AND key=?", (self.run_id, key))

    def close(self) -> None:
        """Close the journal's connection."""
        self.store.close()
