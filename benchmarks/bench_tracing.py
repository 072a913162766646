"""What tracing costs: local and remote tells and asks, tracing off vs a baseline commit, and on.

Three variants run in alternating order in each block, each in fresh processes:

- ``base``: the baseline commit (checked out in a temporary ``git worktree``), no tracing code;
- ``off``: this checkout, tracing off (the default);
- ``on``: this checkout, tracing on in both processes (an SDK provider, a span processor and
  an exporter that drops spans), every message sent from inside a span, so each tell and ask
  carries a context and is handled in a span of its own: the worst case.

Figures per variant, each the least of ``--runs`` short runs in the process: tells/s to one
local actor (until all were handled), the local ask round trip, tells/s to an actor in a
second process over ZeroMQ (until all were handled), and the remote ask round trip; each as
wall time and as CPU time (of both processes for the remote ones), which a busy machine
inflates far less than wall time. Each is printed as a cost ratio per block (time per
message, variant / reference; 1.00 = the same, 1.02 = 2% slower): ``off/base`` (the target
is <= 1.02) and ``on/off`` (the overhead of tracing). Summaries are min / median / max over
the blocks, with the load average at start and end: on a shared machine, compare the medians.

Wall and CPU time on a shared machine vary by tens of percent from block to block, too much to
show a 2% change. ``--instructions`` counts instead: each path runs under valgrind
(``cachegrind``, no cache simulation) with ``N`` and ``3N`` messages in one process (the remote
paths between two nodes in that process, so both ends are counted), and the difference, divided
by ``2N``, is the instructions per message, which does not depend on the machine's load.

Run: ``python benchmarks/bench_tracing.py [--baseline COMMIT] [--blocks 5] [--runs 20]``
or ``python benchmarks/bench_tracing.py --instructions [--baseline COMMIT] [--measured COMMIT]``
(COMMIT: the commit to compare with, by default the one before this checkout's, ``HEAD~1``;
name the last commit before tracing, or any other, to compare with it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("actors", "transport", "kernel", "models", "agents", "cli")
WALL = ("local_tell", "local_ask", "remote_tell", "remote_ask")
FIGURES = (*WALL, *(f"{name} cpu" for name in WALL))

PEER = """
import sys
import time
from llmos.actors import Actor
from llmos.transport import Node
if sys.argv[1] == "on":
    from llmos.actors import tracing
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    class Drop(SpanExporter):
        def export(self, spans): return SpanExportResult.SUCCESS
    tracing.enable(Drop())
class Counter(Actor):
    def __init__(self):
        super().__init__()
        self.count = 0
    def on_receive(self, message):
        if message == "count":
            return self.count
        if message == "cpu":
            return time.process_time()
        self.count += 1
        return message
Counter.start(name="counter")
node = Node()
print(node.address, flush=True)
sys.stdin.read()
node.close()
"""


def measure(on: bool, tells: int, asks: int, runs: int) -> dict[str, float]:
    """One variant's figures, in this process (and a peer process of the same checkout)."""
    import contextlib

    from llmos.actors import Actor, stop_all
    from llmos.transport import Node

    scope: Any = contextlib.nullcontext()
    if on:
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from llmos.actors import tracing

        class Drop(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = tracing.enable(Drop())
        scope = provider.get_tracer("bench").start_as_current_span("bench")

    class Counter(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            if message == "count":
                return self.count
            self.count += 1
            return message

    def cpu(ref: Any) -> float:
        """CPU seconds used so far: this process's, plus the peer's for a remote ref."""
        mine = time.process_time()
        return mine if ref is local else mine + float(ref.ask("cpu", timeout=30).get())

    def tell_cost(ref: Any, n: int) -> tuple[float, float]:
        cpu_start, start = cpu(ref), time.perf_counter()
        for i in range(n):
            ref.tell(i)
        ref.ask("count", timeout=120).get()
        wall = time.perf_counter() - start
        return wall / n, (cpu(ref) - cpu_start) / n

    def ask_cost(ref: Any, n: int) -> tuple[float, float]:
        cpu_start, start = cpu(ref), time.perf_counter()
        for i in range(n):
            ref.ask(i, timeout=30).get()
        wall = time.perf_counter() - start
        return wall / n, (cpu(ref) - cpu_start) / n

    def least(runs_of: list[tuple[float, float]]) -> tuple[float, float]:
        return min(w for w, _ in runs_of), min(c for _, c in runs_of)

    peer = subprocess.Popen(
        [sys.executable, "-c", PEER, "on" if on else "off"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert peer.stdout is not None
        address = peer.stdout.readline().strip()
        with Node() as node, scope:
            local = Counter.start()
            remote = node.ref(f"counter@{address}")
            for ref in (local, remote):  # warm up
                tell_cost(ref, 2000)
                ask_cost(ref, 200)
            # The least of many short runs: a load spike on a shared machine makes a run
            # slower, never faster.
            got = {
                "local_tell": least([tell_cost(local, tells) for _ in range(runs)]),
                "local_ask": least([ask_cost(local, asks) for _ in range(runs)]),
                "remote_tell": least([tell_cost(remote, tells) for _ in range(runs)]),
                "remote_ask": least([ask_cost(remote, max(asks // 4, 1)) for _ in range(runs)]),
            }
            figures = {name: wall for name, (wall, _cpu) in got.items()}
            figures.update({f"{name} cpu": used for name, (_wall, used) in got.items()})
        stop_all()
        return figures
    finally:
        assert peer.stdin is not None
        peer.stdin.close()
        peer.wait(30)


def count_worker(path_name: str, n: int) -> None:
    """Send ``n`` messages down one path (run under valgrind by ``instructions``)."""
    from llmos.actors import Actor, stop_all
    from llmos.transport import Node

    class Counter(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def on_receive(self, message: Any) -> Any:
            if message == "count":
                return self.count
            self.count += 1
            return message

    Counter.start(name="counter")
    with Node() as server, Node() as client:
        ref: Any = Counter.start()
        if path_name.startswith("remote"):
            ref = client.ref(f"counter@{server.address}")
        ref.ask("count", timeout=600).get()  # connected and warm before the count starts
        if path_name.endswith("tell"):
            for i in range(n):
                ref.tell(i)
        else:
            for i in range(n):
                ref.ask(i, timeout=600).get()
        ref.ask("count", timeout=600).get()
    stop_all()


def instructions_of(path: Path, path_name: str, n: int) -> int:
    """Instructions executed by a worker process sending ``n`` messages down ``path_name``."""
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no"]
    command += ["--cachegrind-out-file=/dev/null", sys.executable, str(Path(__file__).resolve())]
    command += ["--count-worker", path_name, "--tells", str(n)]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=3600, check=True, cwd="/"
    )
    for line in done.stderr.splitlines():
        if "I   refs:" in line or "I refs:" in line:
            return int(line.rsplit(":", 1)[1].replace(",", "").strip())
    raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")


def count_instructions(paths: dict[str, Path], rounds: int) -> None:
    """Print instructions per message, base vs new, for each path, ``rounds`` times."""
    sizes = {"local_tell": 4000, "local_ask": 1000, "remote_tell": 1000, "remote_ask": 300}
    for name, n in sizes.items():
        per: dict[str, list[float]] = {"base": [], "new": []}
        for _ in range(rounds):
            for variant in ("base", "new"):
                low = instructions_of(paths[variant], name, n)
                high = instructions_of(paths[variant], name, 3 * n)
                per[variant].append((high - low) / (2 * n))
        base, new = statistics.median(per["base"]), statistics.median(per["new"])
        print(
            f"  {name:<12} base {', '.join(f'{v:,.0f}' for v in per['base'])}"
            f"  new {', '.join(f'{v:,.0f}' for v in per['new'])}"
            f"  new/base (medians) {new / base:.4f}",
            flush=True,
        )


def tree(root: Path, into: Path) -> Path:
    """A folder whose ``llmos`` maps each package to ``root``'s (put first on PYTHONPATH)."""
    (into / "llmos").mkdir(parents=True)
    for package in PACKAGES:
        (into / "llmos" / package).symlink_to(root / package)
    return into


def run_variant(path: Path, on: bool, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += ["--tells", str(args.tells), "--asks", str(args.asks), "--runs", str(args.runs)]
    if on:
        command.append("--on")
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=True, cwd="/"
    )
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def summary(label: str, ratios: list[float]) -> None:
    lo, med, hi = min(ratios), statistics.median(ratios), max(ratios)
    print(f"  {label:<28} min {lo:5.3f}  median {med:5.3f}  max {hi:5.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--baseline", default="HEAD~1", help="the commit to compare with (default: HEAD~1)"
    )
    parser.add_argument(
        "--measured", help="measure this commit instead of the checkout (a git worktree too)"
    )
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--tells", type=int, default=2_000, help="tells per run")
    parser.add_argument("--asks", type=int, default=200, help="asks per run")
    parser.add_argument("--runs", type=int, default=20, help="runs per figure (least kept)")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per message under valgrind instead of timing (tracing off)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count-worker", help=argparse.SUPPRESS)
    parser.add_argument("--on", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.on, args.tells, args.asks, args.runs)))
        return 0
    if args.count_worker:
        count_worker(args.count_worker, args.tells)
        return 0
    print(f"load average at start: {os.getloadavg()}; cpus: {os.cpu_count()}")
    print("per block and variant, µs per message: " + ", ".join(FIGURES))
    with tempfile.TemporaryDirectory(prefix="llmos-bench-") as tmp:
        checkouts = {"base": args.baseline, "new": args.measured}
        made: list[Path] = []
        try:
            paths: dict[str, Path] = {}
            for name, commit in checkouts.items():
                source = ROOT
                if commit:
                    source = Path(tmp) / f"{name}-checkout"
                    subprocess.run(
                        [
                            "git",
                            "-C",
                            str(ROOT),
                            "worktree",
                            "add",
                            "--detach",
                            str(source),
                            commit,
                        ],
                        check=True,
                        capture_output=True,
                    )
                    made.append(source)
                paths[name] = tree(source, Path(tmp) / f"{name}-tree")
            if args.instructions:
                print("instructions per message (tracing off), per round; base vs new:")
                count_instructions(paths, max(args.blocks // 2, 1))
                return 0
            variants = [("base", False), ("off", False), ("on", True)]
            ratios: dict[str, list[float]] = {}
            for block in range(args.blocks):
                order = variants if block % 2 == 0 else variants[::-1]
                got = {
                    name: run_variant(paths["base" if name == "base" else "new"], on, args)
                    for name, on in order
                }
                for figure in FIGURES:
                    off_base = got["off"][figure] / got["base"][figure]
                    on_off = got["on"][figure] / got["off"][figure]
                    ratios.setdefault(f"{figure} off/base", []).append(off_base)
                    ratios.setdefault(f"{figure} on/off", []).append(on_off)
                print(
                    f"block {block}: "
                    + "  ".join(
                        f"{name} " + " ".join(f"{got[name][f] * 1e6:.1f}" for f in FIGURES)
                        for name, _on in variants
                    ),
                    flush=True,
                )
        finally:
            for checkout in made:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)],
                    check=False,
                    capture_output=True,
                )
    print(f"load average at end: {os.getloadavg()}")
    print("cost ratios per block (time per message; min / median / max):")
    for label, values in ratios.items():
        summary(label, values)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
