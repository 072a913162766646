"""``llmos top ADDRESS``: a live terminal view of a node, refreshed every second; ``q`` quits.

It reads the node's snapshot from its ``llmos.observer`` (see :mod:`llmos.cli._observe`) and
draws, with rich: the supervision tree (state, mailbox, processed, failures, restarts, load),
the pools, the peers and transport counters, the model actors (batches, tokens/s, queue) and
the tokens per agent from the node's token ledger.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from llmos.actors import LlmosError

from ._observe import NodeWatcher

__all__ = ["Rates", "render", "run_top"]

_STATE_STYLE = {"running": "green", "failed": "bold red", "restarting": "yellow"}


class Rates:
    """Turns counters of successive snapshots into rates (tokens/s now, per model actor)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int]] = {}

    def tokens_per_second(self, snap: dict[str, Any]) -> dict[str, float]:
        """Tokens generated per wall-clock second since the previous snapshot, per actor."""
        now, rates = snap["at"], {}
        for model in snap["models"]:
            name, tokens = model["actor"], model["tokens_generated"]
            before = self._last.get(name)
            if before is not None and now > before[0]:
                rates[name] = (tokens - before[1]) / (now - before[0])
            self._last[name] = (now, tokens)
        return rates


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(title: str) -> Table:
    # One space between columns, none at the edges: the tables fit 80 columns.
    return Table(
        title=title, title_justify="left", expand=True, box=None, collapse_padding=True,
        pad_edge=False,
    )  # fmt: skip


def _column(table: Table, title: str, text: bool) -> None:
    """A text column (left, shortened with an ellipsis when narrow) or a number column (right,
    never narrower than its title, never wrapped)."""
    if text:
        widest = {"CLASS": 14, "MODEL": 20}.get(title)
        table.add_column(title, justify="left", no_wrap=True, overflow="ellipsis", max_width=widest)
    else:
        width = max(len(line) for line in title.split("\n"))
        table.add_column(title, justify="right", no_wrap=True, min_width=width)


def _actors_table(snap: dict[str, Any]) -> Table:
    table = _table("supervision tree")
    for title, justify in (
        ("ACTOR", "left"),
        ("CLASS", "left"),
        ("STATE", "left"),
        ("MAILBOX", "right"),
        ("PROCESSED", "right"),
        ("FAILURES", "right"),
        ("RESTARTS", "right"),
        ("LOAD", "right"),
    ):
        _column(table, title, justify == "left")
    for row in snap["actors"]:
        indent = "  " * row["depth"] + ("└ " if row["depth"] else "")
        name = Text(indent + row["name"], style="bold" if row["kind"] != "actor" else "")
        state = Text(row["state"], style=_STATE_STYLE.get(row["state"], "dim"))
        restarts = Text(str(row["restarts"]), style="yellow" if row["restarts"] else "")
        table.add_row(
            name,
            row["class"],
            state,
            str(row["mailbox"]),
            str(row["processed"]),
            str(row["failed"]),
            restarts,
            str(row["load"]),
        )
    return table


def _pools_table(snap: dict[str, Any]) -> Table | None:
    if not snap["pools"]:
        return None
    table = _table("pools")
    for title in ("POOL", "ROUTER", "SIZE", "MAILBOX", "PROCESSED", "RESTARTS", "UTIL"):
        _column(table, title, title in ("POOL", "ROUTER"))
    for p in snap["pools"]:
        util = "-" if p["utilisation"] is None else f"{100 * p['utilisation']:.0f}%"
        table.add_row(
            p["name"],
            p["router"],
            f"{p['size']} ({p['min_size']}-{p['max_size']})",
            str(p["mailbox"]),
            str(p["processed"]),
            str(p["restarts"]),
            util,
        )
    return table


def _peers_text(snap: dict[str, Any]) -> Text:
    t = snap["transport"]
    if t is None:
        return Text("peers: (no transport node)", style="dim")
    text = Text("peers: ")
    text.append(f"{len(t['peers_up'])} up", style="green")
    text.append(", ")
    text.append(f"{len(t['peers_down'])} down", style="red" if t["peers_down"] else "")
    for address in t["peers_up"]:
        text.append(f"  {address}", style="green")
    for address in t["peers_down"]:
        text.append(f"  {address} (down)", style="red")
    silent = t.get("clients_silent", 0)
    text.append(f"\nconnected here: {t.get('clients_up', 0)} up, ")
    text.append(f"{silent} silent", style="yellow" if silent else "")
    text.append(
        f"\nframes in {t['frames_in']} / out {t['frames_out']}"
        f"   bytes in {_size(t.get('bytes_in', 0))} / out {_size(t.get('bytes_out', 0))}"
        f"   bad frames {t['bad_frames']}   refusals {t['refusals']}"
        f"   pending {t['pending_requests']}"
    )
    return text


def _models_table(snap: dict[str, Any], rates: dict[str, float]) -> Table | None:
    if not snap["models"]:
        return None
    table = _table("model actors")
    for title in (
        "ACTOR",
        "MODEL",
        "QUEUED",
        "REQS",
        "BATCHES",
        "AVG\nBATCH",
        "TOKENS",
        "TOK/S\nNOW",
        "TOK/S\nGEN",
        "AVG\nWAIT",
    ):
        _column(table, title, title in ("ACTOR", "MODEL"))
    for m in snap["models"]:
        wait = m.get("queue_seconds", 0.0) / m["completed"] if m["completed"] else 0.0
        now = rates.get(m["actor"])
        table.add_row(
            m["actor"],
            m["model"],
            str(m["queued"]),
            str(m["requests"]),
            str(m["batches"]),
            f"{m['mean_batch_size']:.2f}",
            str(m["tokens_generated"]),
            "-" if now is None else f"{now:.1f}",
            f"{m['tokens_per_second']:.1f}",
            f"{wait * 1000:.0f} ms",
        )
    return table


def _tokens_table(snap: dict[str, Any]) -> Table | None:
    agents = snap["tokens"].get("agents", {})
    if not agents:
        return None
    table = _table("tokens per agent")
    for title in ("AGENT", "REQUESTS", "IN", "OUT", "BUDGET"):
        _column(table, title, title == "AGENT")
    for name, usage in sorted(agents.items()):
        budget = usage.get("budget")
        table.add_row(
            name,
            str(usage["requests"]),
            str(usage["input_tokens"]),
            str(usage["output_tokens"]),
            "-" if budget is None else str(budget),
        )
    return table


def render(
    address: str, snap: dict[str, Any] | None, rates: dict[str, float], error: str = ""
) -> RenderableType:
    """One frame of ``llmos top`` for ``snap`` (None: nothing read yet)."""
    head = Text(f"llmos top  {address}", style="bold")
    if snap is not None:
        node = snap["node"] or {}
        k = snap["kernel"]
        head.append(
            f"  {node.get('name', '')}  {time.strftime('%H:%M:%S', time.localtime(snap['at']))}"
            f"  actors {len(snap['actors'])}  processed {k['processed']}"
            f"  restarts {k['restarts']}  dead letters {k['dead_letters']}",
            style="",
        )
    parts: list[RenderableType] = [head]
    if error:
        parts.append(Text(error, style="bold red"))
    if snap is not None:
        parts.append(_actors_table(snap))
        for table in (_pools_table(snap), _models_table(snap, rates), _tokens_table(snap)):
            if table is not None:
                parts.append(table)
        parts.append(_peers_text(snap))
    parts.append(Text("q quits", style="dim"))
    return Group(*parts)


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive one at a time, unechoed), or None if not a terminal."""
    if not sys.stdin.isatty():
        yield None
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_for_q(fd: int | None, seconds: float) -> bool:
    """Wait up to ``seconds``; True if ``q`` was pressed."""
    if fd is None:
        time.sleep(seconds)
        return False
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            key = os.read(fd, 32)
            if not key:  # stdin closed: nothing can press q any more
                time.sleep(max(deadline - time.monotonic(), 0))
                return False
            if b"q" in key.lower():
                return True
    return False


def _console() -> Console:
    # A file or a pipe has no width of its own: 120 columns fit every table.
    return Console() if sys.stdout.isatty() else Console(width=120)


def _batch(
    watcher: NodeWatcher, address: str, snap: dict[str, Any], rates: Rates, interval: float
) -> int:
    """Not a terminal (a file, a pipe): one view per refresh, one after the other, until
    Ctrl+C or a closed pipe."""
    console = _console()
    while True:
        console.print(render(address, snap, rates.tokens_per_second(snap)))
        console.print()
        sys.stdout.flush()
        time.sleep(interval)
        snap = watcher.snapshot()


def run_top(
    address: str,
    interval: float = 1.0,
    timeout: float = 5.0,
    keys: str | None = None,
    server_key: str | None = None,
    once: bool = False,
) -> int:
    """Run ``llmos top``: redraw every ``interval`` seconds until ``q`` (exit code 0).

    With ``once``, print one view and end. When stdout is not a terminal (a file, a pipe),
    print one view per refresh, one after the other, until Ctrl+C.

    Raises:
        NodeUnreachable, ActorDeadError: the node cannot be read at start (later failures are
            shown in the view, and reading is tried again at each refresh).
    """
    # A failure is shown once, in the view or as the command's error line, not logged too.
    logging.getLogger("llmos").addHandler(logging.NullHandler())
    logging.getLogger("llmos").propagate = False
    rates = Rates()
    with NodeWatcher(address, timeout=timeout, keys=keys, server_key=server_key) as watcher:
        snap = watcher.snapshot()
        if once:
            _console().print(render(address, snap, rates.tokens_per_second(snap)))
            return 0
        if not sys.stdout.isatty():
            return _batch(watcher, address, snap, rates, interval)
        with _keys() as fd, Live(auto_refresh=False, screen=True) as live:
            error = ""
            while True:
                live.update(
                    render(address, snap, rates.tokens_per_second(snap), error), refresh=True
                )
                if _wait_for_q(fd, interval):
                    return 0
                try:
                    snap = watcher.snapshot()
                    error = ""
                except LlmosError as exc:
                    error = f"{type(exc).__name__}: {exc} (retrying)"
