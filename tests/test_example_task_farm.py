"""Smoke test: examples/task_farm.py runs as a user would run it and prints the figures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "task_farm.py"


def figure(out: str, name: str) -> float:
    found = re.search(rf"^{name}: ([0-9.]+)$", out, re.MULTILINE)
    assert found, f"no {name!r} line in:\n{out}"
    return float(found.group(1))


def test_task_farm_example_prints_the_three_scheduling_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"task_farm.py failed:\n{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert out.startswith("100 tasks on 5 workers (least_loaded)")
    assert sum(int(n) for n in re.findall(r"farm-\d+ (\d+)", out)) == 100
    for name in ("load-balancing efficiency", "utilisation", "parallel efficiency"):
        assert 0 < figure(out, name) <= 1.05
    assert figure(out, "speed-up") > 1
