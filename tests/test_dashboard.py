"""``llmos dashboard`` in a real headless Chromium (driven through chromedriver), against a real
``llmos node`` whose actor crashes and whose dialogue speaks turn by turn while the page is open.
A screenshot is saved under build/artifacts/."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from observe_support import LLMOS, env, live_node, read_line
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from llmos.agents import StartChat
from llmos.cli import Dashboard, node_snapshot

ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "artifacts"

RESTARTS = """return document.querySelector('tr[data-actor="crasher"] td[data-field="restarts"]')
    ?.textContent ?? null"""
UTTERANCES = """return Array.from(document.querySelectorAll('[data-chat="chat"] .turn.utterance'))
    .map((e) => e.querySelector('.speaker').textContent)"""
TRACES = """return Array.from(document.querySelectorAll('[data-chat="chat"] .turn.utterance'))
    .map((e) => e.getAttribute('data-trace'))"""
CHAT_TITLE = "return document.querySelector('[data-chat=\"chat\"] h3')?.textContent ?? ''"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "chromium and chromedriver: scripts/test installs them"
    options = Options()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1100",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: webdriver.Chrome, what: str, script: str, check: Any, timeout: float) -> Any:
    """Run ``script`` in the page until ``check`` holds for its result (at most ``timeout`` s)."""
    seen: list[Any] = []

    def passed(d: webdriver.Chrome) -> bool:
        seen[:] = [d.execute_script(script)]
        return bool(check(seen[0]))

    try:
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(passed)
    except Exception as exc:
        raise AssertionError(f"not within {timeout} s: {what} (last: {seen!r})") from exc
    return seen[0]


@pytest.mark.multiprocess
def test_dashboard_in_chromium_tree_restarts_and_turns(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    # Traced (spans to a file): each turn shows the id of its trace.
    tracing = {"LLMOS_TRACING": f"jsonl:{tmp_path / 'spans.jsonl'}"}
    with live_node(tmp_path, extra_env=tracing) as node:
        node.spawn("observe_node:CrashFarm", "farm")
        node.spawn("observe_node:Stage", "stage")
        served = subprocess.Popen(
            [*LLMOS, "dashboard", node.address, "--port", "0", "--interval", "0.25"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env(),
        )
        try:
            assert served.stdout is not None and served.stderr is not None
            line = read_line(served.stdout)
            assert line.startswith("llmos dashboard: http://127.0.0.1:"), line
            url = line.split()[2]
            browser.get(url)

            # The tree: the kernel, the supervisors and their children, with their parents.
            until(browser, "crasher in the tree", RESTARTS, lambda text: text == "0", 15)
            parents = browser.execute_script(
                "return Object.fromEntries(Array.from(document.querySelectorAll("
                "'#tree tr[data-actor]')).map((r) => [r.dataset.actor, r.dataset.parent]))"
            )
            assert parents["farm"] == "llmos.kernel" and parents["crasher"] == "farm"
            assert parents["stage"] == "llmos.kernel" and parents["chat"] == "stage"
            assert parents["model"] == "stage"

            # A restart shows within 2 s.
            crasher = node.ref("crasher")
            for expected in ("1", "2"):
                started = time.monotonic()
                crasher.tell("crash")
                until(browser, f"restarts {expected}", RESTARTS, lambda t, e=expected: t == e, 2.0)
                assert time.monotonic() - started < 2.0

            # Turns appear as they are generated, one per gate opening.
            node.ref("chat").tell(StartChat())
            gate = node.ref("gate")
            until(browser, "the chat running", CHAT_TITLE, lambda t: "running" in t, 10)
            assert browser.execute_script(UTTERANCES) == []
            gate.tell("next")
            until(browser, "turn 1", UTTERANCES, lambda s: s == ["ada"], 10)
            assert "running" in browser.execute_script(CHAT_TITLE)
            gate.tell("next")
            until(browser, "turn 2", UTTERANCES, lambda s: s == ["ada", "rex"], 10)
            traces = browser.execute_script(TRACES)
            assert len(traces) == 2 and traces[0] != traces[1], traces
            assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in traces), traces
            models = browser.execute_script(
                'return document.querySelector(\'tr[data-model="model"] '
                'td[data-field="requests"]\')?.textContent'
            )
            assert models == "2"
            agents = browser.execute_script(
                "return Array.from(document.querySelectorAll('#tokens tr[data-agent]'))"
                ".map((r) => r.dataset.agent)"
            )
            assert agents == ["ada", "rex"]
            for _ in range(4):
                gate.tell("next")
            until(browser, "the chat's end", CHAT_TITLE, lambda t: "ended" in t, 15)
            assert len(browser.execute_script(UTTERANCES)) == 6

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            assert browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))

            served.send_signal(signal.SIGINT)  # Ctrl+C: exit code 130, one line
            assert served.wait(20) == 130
            assert served.stderr.read().strip() == "llmos dashboard: interrupted"
        finally:
            if served.poll() is None:
                served.kill()
                served.wait(10)
            for stream in (served.stdout, served.stderr):
                if stream is not None:
                    stream.close()


def test_a_token_guards_every_path() -> None:
    board = Dashboard(lambda: node_snapshot(None), "in-process", port=0, token="s3cret")
    try:
        base = board.url.split("?")[0]
        for path in ("", "dashboard.js", "snapshot", "events"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path, timeout=10)
            assert refused.value.code == 403
        with urllib.request.urlopen(base + "snapshot?token=s3cret", timeout=10) as answer:
            assert answer.status == 200 and b'"actors"' in answer.read()
        with urllib.request.urlopen(board.url, timeout=10) as answer:
            assert b"<title>llmos dashboard</title>" in answer.read()
    finally:
        board.close()


def test_a_non_loopback_bind_needs_a_token() -> None:
    done = subprocess.run(
        [*LLMOS, "dashboard", "tcp://127.0.0.1:1", "--bind", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("llmos dashboard: LlmosError: --bind 0.0.0.0"), done.stderr
    assert "--token" in done.stderr and done.stderr.count("\n") == 1
