"""Prometheus metrics of a node, scraped over real HTTP: from a real ``llmos node --metrics``
process whose actors crash and restart, and from ``serve_metrics`` in this process."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from observe_support import LLMOS, env, live_node, wait_for
from prometheus_client.parser import text_string_to_metric_families

from llmos.actors import Actor, LlmosError
from llmos.agents import StartChat
from llmos.cli import Observer, serve_metrics
from llmos.kernel import kernel
from llmos.transport import Node

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def scrape_until(url: str, what: str, check: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``check`` holds (bounded); the samples that passed."""

    def passed() -> Samples | None:
        samples = scrape(url)
        return samples if check(samples) else None

    return wait_for(what, passed)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.mark.multiprocess
def test_node_metrics_follow_crashes_restarts_and_a_dialogue(tmp_path: Path) -> None:
    with live_node(tmp_path, "--metrics", "127.0.0.1:0") as node:
        url = node.stderr_line("llmos node: metrics at ").rsplit(" ", 1)[1]
        node.spawn("observe_node:CrashFarm", "farm")
        before = scrape(url)
        crasher = {"actor": "crasher", "class": "Crasher", "parent": "farm"}
        assert value(before, "llmos_actor_restarts_total", **crasher) == 0
        assert value(before, "llmos_actor_failures_total", **crasher) == 0
        assert value(before, "llmos_actors", state="running")
        dead_before = value(before, "llmos_dead_letters_total")
        assert dead_before is not None

        ref = node.ref("crasher")
        for _ in range(3):
            ref.tell("crash")
        after = scrape_until(
            url,
            "three restarts of crasher in the scraped metrics",
            lambda s: value(s, "llmos_actor_restarts_total", **crasher) == 3,
        )
        assert value(after, "llmos_actor_failures_total", **crasher) == 3
        dead_after = value(after, "llmos_dead_letters_total")
        assert dead_after is not None and dead_after >= dead_before + 3  # the failing messages
        bytes_in = value(after, "llmos_transport_bytes_total", direction="in")
        assert bytes_in is not None and bytes_in > 0
        assert value(after, "llmos_transport_bad_frames_total") == 0
        assert value(after, "llmos_peers", state="up") is not None
        clients_up = value(after, "llmos_clients", state="up")  # this test's own node
        assert clients_up is not None and clients_up >= 1

        # A dialogue on the fake model: batch sizes, tokens per agent and per model.
        node.spawn("observe_node:Stage", "stage")
        node.ref("chat").tell(StartChat())
        gate = node.ref("gate")
        gate.tell("next")
        gate.tell("next")
        model = {"actor": "model", "model": "fake"}
        done = scrape_until(
            url,
            "two completed requests in the model's metrics, charged to both agents",
            lambda s: (
                value(s, "llmos_model_completed_total", **model) == 2
                and value(s, "llmos_agent_tokens_total", agent="rex", direction="output")
                is not None
                and value(s, "llmos_agent_tokens_total", agent="ada", direction="output")
                is not None
            ),
        )
        assert value(done, "llmos_model_batch_size_count", **model) == 2
        assert value(done, "llmos_model_batch_size_bucket", le="1.0", **model) == 2
        tokens = value(done, "llmos_model_tokens_generated_total", **model)
        assert tokens and tokens > 0
        ada = value(done, "llmos_agent_tokens_total", agent="ada", direction="output")
        rex = value(done, "llmos_agent_tokens_total", agent="rex", direction="output")
        assert ada and rex and ada + rex == tokens
        assert value(done, "llmos_model_queue_seconds_count", **model) == 2
        for _ in range(4):  # the chat's other turns, so the node stops at once
            gate.tell("next")


def test_a_bad_metrics_address_is_one_line_naming_the_flag() -> None:
    done = subprocess.run(
        [*LLMOS, "node", "--metrics", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        check=False,
    )
    assert done.returncode == 2
    assert "--metrics takes HOST:PORT" in done.stderr, done.stderr


class Flaky(Actor):
    def on_receive(self, message: object) -> object:
        if message == "crash":
            raise RuntimeError("crash on request")
        return message


def test_metrics_off_loopback_need_a_token_and_a_token_guards_every_scrape() -> None:
    with pytest.raises(LlmosError, match="--metrics-token"):
        serve_metrics("0.0.0.0:0", snapshot=lambda: {})  # refused before anything binds
    node = Node(name="metrics-token")
    server = serve_metrics("127.0.0.1:0", node=node, token="s3cret-token")
    try:
        for sent in [None, "Bearer wrong", "s3cret-token"]:
            request = urllib.request.Request(server.url)
            if sent is not None:
                request.add_header("Authorization", sent)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401
        request = urllib.request.Request(server.url)
        request.add_header("Authorization", "Bearer s3cret-token")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert "llmos_actors" in answer.read().decode()
    finally:
        server.close()
        node.close()


def test_serve_metrics_in_process() -> None:
    node = Node(name="metrics-here")
    server = serve_metrics("127.0.0.1:0", node=node)
    try:
        Observer.start_for(node)
        ref = kernel().spawn(Flaky, name="flaky")
        kernel().spawn_pool(Flaky, size=2, name="flakes")
        assert ref.ask("hi", timeout=5).get() == "hi"
        labels = {"actor": "flaky", "class": "Flaky", "parent": "llmos.kernel"}
        first = scrape(server.url)
        assert value(first, "llmos_actor_processed_total", **labels) == 1
        assert value(first, "llmos_actor_latency_seconds_count", actor="flaky") == 1
        asked = {"actor": "flaky"}
        assert value(first, "llmos_actor_ask_latency_seconds_count", **asked) == 1
        assert value(first, "llmos_actor_ask_latency_seconds_bucket", le="10.0", **asked) == 1
        assert value(first, "llmos_actor_ask_latency_seconds_bucket", le="+Inf", **asked) == 1
        fast = value(first, "llmos_actor_ask_latency_seconds_bucket", le="0.0001", **asked)
        assert fast is not None and fast <= 1
        assert value(first, "llmos_pool_size", pool="flakes") == 2
        member = {"actor": "flakes-1", "class": "Flaky", "parent": "flakes"}
        assert value(first, "llmos_actor_restarts_total", **member) == 0
        ref.tell("crash")
        scrape_until(
            server.url,
            "flaky restarted, as scraped",
            lambda s: value(s, "llmos_actor_restarts_total", **labels) == 1,
        )
    finally:
        server.close()
        node.close()
