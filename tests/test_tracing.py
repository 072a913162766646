"""Tracing: spans follow asks and tells across actors, the wire and processes; off by default.

The two-process test runs a real ``llmos node`` process that serves the fake model and writes
its spans to a JSONL file, while this process runs the agents and the dialogue with an
in-memory exporter; the spans of both must form one trace per turn with the right parents.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from transport_hostile import answer_to, attacker, packb
from transport_support import ask_item

from llmos.actors import Actor, LlmosError, handler, message, tracing
from llmos.agents import ChatAgent, Dialogue, MaxTurns, run_chat
from llmos.models import FakeModel, Generate, Score
from llmos.transport import Node
from llmos.transport._frames import REPLY, TELL, pack_frame

T = 10.0
VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.enable(exporter)
    try:
        yield exporter
    finally:
        tracing.disable()


@message("test.tracing.Forward")
class Forward:
    text: str


@message("test.tracing.Boom")
class Boom:
    pass


@message("test.tracing.Quiet", local_only=True)
class Quiet:
    pass


class Front(Actor):
    """Asks the back actor, and tells it too, while handling Forward."""

    def __init__(self, back: Any) -> None:
        super().__init__()
        self.back = back

    @handler(Forward)
    def forward(self, msg: Forward) -> str:
        self.back.tell(msg.text)
        return str(self.back.ask(msg.text, timeout=T).get())

    @handler(Quiet)
    def quiet(self, _msg: Quiet) -> str:
        return "quiet"


class Back(Actor):
    def __init__(self, told: threading.Event | None = None) -> None:
        super().__init__()
        self.told = told

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Boom):
            raise ValueError("boom")
        if self.told is not None and not self.actor_asked:
            self.told.set()
        return f"back: {message}"


def by_name(finished: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in finished}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_tracing_is_off_by_default_and_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from llmos.actors import Actor, tracing, stop_all\n"
        "import llmos.agents, llmos.transport\n"
        "class Echo(Actor):\n"
        "    def on_receive(self, m): return m\n"
        "ref = Echo.start()\n"
        "ref.tell(1); assert ref.ask(2, timeout=5).get() == 2\n"
        "stop_all()\n"
        "print(tracing.enabled(), tracing.current_traceparent(), 'opentelemetry' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "None", "False"]


def test_asks_and_tells_from_a_span_are_its_children(spans: InMemorySpanExporter) -> None:
    told = threading.Event()
    back = Back.start(told, name="back")
    front = Front.start(back, name="front")
    assert front.ask(Forward("hi"), timeout=T).get() == "back: hi"
    assert told.wait(T)
    assert front.ask(Quiet(), timeout=T).get() == "quiet"  # local_only: no span
    with pytest.raises(ValueError, match="boom"):
        back.ask(Boom(), timeout=T).get()
    front.stop()
    back.stop()
    done = spans.get_finished_spans()
    names = sorted(s.name for s in done)
    assert names == [
        "ask str",
        "ask test.tracing.Boom",
        "ask test.tracing.Forward",
        "handle str",
        "handle str",
        "handle test.tracing.Boom",
        "handle test.tracing.Forward",
    ]
    ask = by_name(done)["ask test.tracing.Forward"]
    handle = by_name(done)["handle test.tracing.Forward"]
    assert ask.parent is None and ask.kind.name == "CLIENT"
    assert parent_of(handle) == ask.context.span_id and handle.kind.name == "SERVER"
    assert dict(handle.attributes or {})["llmos.actor"] == "front"
    inner_ask = by_name(done)["ask str"]
    assert parent_of(inner_ask) == handle.context.span_id
    # The told str and the asked str are both handled in children: one of the tell's span
    # (CONSUMER, parent: the Forward handler), one of the inner ask (SERVER).
    inner = sorted((s for s in done if s.name == "handle str"), key=lambda s: s.kind.name)
    assert [s.kind.name for s in inner] == ["CONSUMER", "SERVER"]
    assert parent_of(inner[0]) == handle.context.span_id
    assert parent_of(inner[1]) == inner_ask.context.span_id
    assert len({s.context.trace_id for s in done if "Boom" not in s.name}) == 1
    boom = by_name(done)["handle test.tracing.Boom"]
    assert boom.status.status_code.name == "ERROR"
    assert by_name(done)["ask test.tracing.Boom"].status.status_code.name == "ERROR"


def test_a_peers_trace_context_is_checked_and_serves_tracing_only(
    spans: InMemorySpanExporter,
) -> None:
    got: list[Any] = []
    arrived = threading.Semaphore(0)

    class Record(Actor):
        def on_receive(self, message: Any) -> Any:
            got.append(message)
            arrived.release()
            return message

    Record.start(name="echo")
    bad: list[Any] = [
        "garbage",
        "x" * 100_000,
        VALID.upper(),
        "01" + VALID[2:],  # an unknown version
        "00-" + "0" * 32 + VALID[35:],  # a zero trace id
        VALID[:-1] + "\u00e9",  # right length, not hex
        12345,
        [VALID],
    ]
    with Node(name="served") as node, attacker(node.address) as sock:
        items: list[list[Any]] = []
        for i, value in enumerate([*bad, VALID]):
            items.append([TELL, "echo", packb(f"tell {i}"), value])
            ask = ask_item(100 + i, packb(f"ask {i}"))
            items.append([*ask, ask[3], value])  # give_up: the deadline; then the context
        sock.send(pack_frame(items))
        for i in range(len(bad) + 1):
            assert answer_to(sock, 100 + i)[0] == REPLY
        for _ in range(2 * (len(bad) + 1)):
            assert arrived.acquire(timeout=T)
        assert node.statistics().bad_traces == 2 * len(bad)
        assert node.statistics().bad_items == 0
    assert sorted(got) == sorted([f"tell {i}" for i in range(9)] + [f"ask {i}" for i in range(9)])
    handled = [s for s in spans.get_finished_spans() if s.name == "handle str"]
    # Only the two messages with a well-formed context were handled in spans, both children of
    # the peer's span, in the peer's trace.
    assert len(handled) == 2
    for span in handled:
        assert f"{span.context.trace_id:032x}" == VALID[3:35]
        assert span.parent is not None and f"{span.parent.span_id:016x}" == VALID[36:52]
        assert span.parent.is_remote


def test_enable_refuses_an_unknown_exporter_and_reads_the_environment(tmp_path: Path) -> None:
    with pytest.raises(LlmosError, match="unknown trace exporter"):
        tracing.enable("carrier-pigeon")
    tracing.disable()
    assert not tracing.enable_from_env({"LLMOS_TRACING": "off"}) and not tracing.enabled()
    path = tmp_path / "spans.jsonl"
    assert tracing.enable_from_env({"LLMOS_TRACING": f"jsonl:{path}"})
    try:
        ref = FakeModel.start(name="fake")
        ref.ask(Generate(prompt="hello there", requester="ann"), timeout=T).get()
        ref.stop()
    finally:
        tracing.disable()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    model = next(r for r in records if r["name"] == "text_completion fake")
    assert model["attributes"]["gen_ai.usage.input_tokens"] == 2
    assert model["attributes"]["gen_ai.usage.output_tokens"] == 4
    assert model["attributes"]["gen_ai.response.finish_reasons"] == ["stop"]
    assert model["pid"] == os.getpid()


def test_a_score_gets_a_genai_span_with_the_tokens_it_read(spans: InMemorySpanExporter) -> None:
    fake = FakeModel.start(["bob"], name="fake")
    request = Score(("ann", "bob"), prompt="who speaks next", requester="sel", dialogue="d1")
    scores = fake.ask(request, timeout=T).get()
    fake.stop()
    finished = by_name(spans.get_finished_spans())
    span = finished["score fake"]
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "score",
        "gen_ai.provider.name": "llmos",
        "gen_ai.request.model": "fake",
        "gen_ai.response.model": "fake",
        "gen_ai.agent.name": "sel",
        "gen_ai.conversation.id": "d1",
        "gen_ai.usage.input_tokens": scores.input_tokens,
        "gen_ai.usage.output_tokens": 0,
        "llmos.model.candidates": 2,
    }
    assert scores.input_tokens == 3
    assert parent_of(span) == finished["handle llmos.model.Score"].context.span_id


# -- two processes -------------------------------------------------------------------------------


def start_model_node(spans_file: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "LLMOS_TRACING": f"jsonl:{spans_file}"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmos.cli",
            "node",
            "--name",
            "model-node",
            "--allow-spawn",
            "llmos.models:FakeModel",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    address = proc.stdout.readline().strip()
    if not address:
        proc.kill()
        proc.wait(10)
        pytest.fail("the model node did not start")
    return proc, address


@pytest.mark.multiprocess
def test_a_two_node_dialogue_is_one_trace_per_turn(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    remote_file = tmp_path / "model-node.jsonl"
    proc, address = start_model_node(remote_file)
    try:
        with Node() as node:
            model = node.spawn_remote(address, "llmos.models:FakeModel", name="model", timeout=60)
            ann = ChatAgent.start(model, "You are Ann.", avoid_repeats=1.0, name="ann")
            bob = ChatAgent.start(model, "You are Bob.", avoid_repeats=1.0, name="bob")
            result = run_chat(
                [ann, bob], "Tea?", chat_class=Dialogue, termination=MaxTurns(3), printer=None
            )
            assert result.speakers == ["ann", "bob", "ann"]
            ann.stop()
            bob.stop()
    finally:
        proc.terminate()  # the node flushes its spans as it ends
        assert proc.wait(30) == 0
        assert proc.stdout is not None
        proc.stdout.close()
    remote = [json.loads(line) for line in remote_file.read_text().splitlines()]
    local = [tracing.span_record(s) for s in spans.get_finished_spans()]
    assert {r["pid"] for r in remote} == {proc.pid}
    assert {r["pid"] for r in local} == {os.getpid()}
    everything = local + remote
    by_id = {r["span_id"]: r for r in everything}
    roots = sorted((r for r in local if r["parent_id"] == ""), key=lambda r: r["start"])
    turns = [r for r in roots if r["name"].startswith("turn ")]
    assert [r["name"] for r in turns] == ["turn 1 ann", "turn 2 bob", "turn 3 ann"]
    # One trace per turn, named in the transcript.
    assert [e.trace_id for e in result.utterances] == [r["trace_id"] for r in turns]
    for root in turns:
        assert root["attributes"]["gen_ai.conversation.id"] == result.dialogue
        trace = [r for r in everything if r["trace_id"] == root["trace_id"]]
        chain = sorted(trace, key=lambda r: r["start"])
        names = [r["name"] for r in chain]
        assert names == [
            root["name"],
            "ask llmos.agents.Turn",
            "handle llmos.agents.Turn",
            "ask llmos.model.Generate",
            "handle llmos.model.Generate",
            "chat fake",
        ]
        for child, parent in zip(chain[1:], chain, strict=False):
            assert by_id[child["parent_id"]] is parent  # each hop is the child of the one before
        assert [r["pid"] for r in chain] == [os.getpid()] * 4 + [proc.pid] * 2
        speaker = root["attributes"]["gen_ai.agent.name"]
        assert chain[1]["attributes"]["llmos.actor"] == speaker
        assert chain[2]["attributes"]["gen_ai.agent.name"] == speaker
        model_span = chain[-1]["attributes"]
        assert model_span["gen_ai.agent.name"] == speaker
        assert model_span["gen_ai.conversation.id"] == result.dialogue
        assert model_span["gen_ai.usage.input_tokens"] > 0
        assert model_span["gen_ai.usage.output_tokens"] > 0
        assert model_span["llmos.model.batch_size"] == 1
    # Every span the model node recorded belongs to one of the turns.
    assert {r["trace_id"] for r in remote} == {r["trace_id"] for r in turns}


def test_otlp_sends_the_spans_to_a_collector_over_http(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, name="collector")
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "otlp-test")
        assert tracing.enable_from_env({"LLMOS_TRACING": "otlp"})
        try:
            fake = FakeModel.start(name="fake")
            fake.ask(Generate(prompt="hello", requester="ann"), timeout=T).get()
            fake.stop()
        finally:
            tracing.disable()  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
        thread.join(T)
    assert received and all(path == "/v1/traces" for path, _ in received)
    names: set[str] = set()
    services: set[str] = set()
    for _path, body in received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope in resource_spans.scope_spans:
                names.update(span.name for span in scope.spans)
    assert {
        "ask llmos.model.Generate",
        "handle llmos.model.Generate",
        "text_completion fake",
    } <= names
    assert services == {"otlp-test"}
