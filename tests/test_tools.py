"""Tools: schemas from type hints, tool actors under the kernel (crash and restart, timeout,
concurrency), and a tool served by a second node in its own process."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from transport_support import PeerProcess

from llmos.actors import Actor, handler
from llmos.agents import (
    CallTool,
    EffectJournal,
    ListTools,
    ToolArgumentsError,
    ToolBox,
    ToolError,
    ToolLoop,
    ToolResult,
    ToolSpec,
    call_schema,
    start_tools,
    tool,
)
from llmos.kernel import kernel
from llmos.models import Completion, Generate
from llmos.transport import Node

TOOL_PEER = Path(__file__).with_name("tool_peer.py")


@tool
def convert(value: float, unit: Literal["km_to_miles", "miles_to_km"] = "km_to_miles") -> float:
    """Convert a distance.

    Args:
        value: the distance.
        unit: which way to convert.
    """
    return round(value * 0.621371 if unit == "km_to_miles" else value / 0.621371, 3)


def test_the_schema_comes_from_the_type_hints_and_the_docstring() -> None:
    assert convert.name == "convert" and convert.description == "Convert a distance."
    schema = convert.parameters
    assert schema["type"] == "object" and schema["required"] == ["value"]
    assert schema["properties"]["value"] == {
        "type": "number",
        "description": "the distance.",
        "title": "Value",
    }
    assert schema["properties"]["unit"]["enum"] == ["km_to_miles", "miles_to_km"]
    assert schema["additionalProperties"] is False
    assert convert(10) == 6.214  # still a plain function
    assert convert.invoke({"value": "10", "unit": "km_to_miles"}) == 6.214  # validated
    with pytest.raises(ToolArgumentsError, match="unit"):
        convert.invoke({"value": 1, "unit": "furlongs"})
    with pytest.raises(ToolArgumentsError, match="value"):
        convert.invoke({"unit": "km_to_miles"})
    with pytest.raises(ToolError, match="type hint"):
        tool(name="untyped")(lambda x: x)
    decision = call_schema([ToolSpec("convert", "", convert.parameters)])
    assert [o["properties"]["tool"]["const"] for o in decision["anyOf"]] == ["convert", "none"]


def test_a_method_becomes_a_tool_bound_to_its_instance() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        @tool
        def add(self, amount: int) -> int:
            """Add to the running total."""
            self.total += amount
            return self.total

    counter = Counter()
    bound = counter.add
    assert "self" not in bound.parameters["properties"]
    assert bound.invoke({"amount": 2}) == 2 and bound.invoke({"amount": 3}) == 5


def test_a_tool_actor_answers_results_and_typed_errors_as_observations() -> None:
    ref = start_tools(convert)
    specs = ref.ask(ListTools(), timeout=10).get()
    assert [s.name for s in specs] == ["convert"]
    ok = ref.ask(CallTool("convert", {"value": 10}, "c1"), timeout=10).get()
    assert ok == ToolResult("convert", True, "6.214", 6.214, "", "c1", ok.seconds)
    bad = ref.ask(CallTool("convert", {"value": "ten"}), timeout=10).get()
    assert not bad.ok and bad.error_type == "ToolArgumentsError" and "value" in bad.content
    unknown = ref.ask(CallTool("teleport", {}), timeout=10).get()
    assert not unknown.ok and unknown.error_type == "ToolUnavailable"
    assert "convert" in unknown.content  # says what is offered
    with pytest.raises(ToolArgumentsError):
        bad.raise_for_error()


def test_a_crashing_tool_is_restarted_by_the_kernel_and_the_caller_gets_an_observation() -> None:
    calls: list[int] = []

    @tool
    def fragile(n: int) -> int:
        """Fails on odd numbers."""
        calls.append(n)
        if n % 2:
            raise RuntimeError(f"odd number {n}")
        return n * 10

    @tool
    def refuses(n: int) -> int:
        """Reports a failure it expects."""
        raise ToolError(f"no record {n}")

    ref = start_tools(fragile, refuses, name="fragile")
    box = ToolBox([ref])
    crashed = box.call("fragile", {"n": 1})
    assert not crashed.ok and crashed.error_type == "ToolCrashed"
    assert "RuntimeError: odd number 1" in crashed.content
    expected = box.call("refuses", {"n": 7})
    assert not expected.ok and expected.error_type == "ToolError"
    assert expected.content == "no record 7"
    # The kernel restarted the actor after the crash (not after the ToolError), same ref.
    assert box.call("fragile", {"n": 2}).data == 20
    assert kernel().stats().restarts >= 1
    assert calls == [1, 2]


def test_a_tool_timeout_is_an_observation_and_the_limit_on_concurrent_calls_holds() -> None:
    release = threading.Event()
    entered = threading.Semaphore(0)

    @tool(timeout=0.5, concurrency=1)
    def slow(tag: str) -> str:
        """Blocks until the test releases it."""
        entered.release()
        release.wait(20)
        return tag

    ref = start_tools(slow, name="slow")
    try:
        first = ref.ask(CallTool("slow", {"tag": "a"}), timeout=10)
        assert entered.acquire(timeout=10)
        waiting = [ref.ask(CallTool("slow", {"tag": str(i)}), timeout=10) for i in range(16)]
        busy = ref.ask(CallTool("slow", {"tag": "over"}), timeout=10).get()
        assert not busy.ok and busy.error_type == "ToolBusy"
        timed_out = first.get()
        assert not timed_out.ok and timed_out.error_type == "ToolTimeout"
        assert 0.4 < timed_out.seconds < 5
        # The waiting calls time out too; none of them started (one worker, still held).
        assert {w.get().error_type for w in waiting} == {"ToolTimeout"}
    finally:
        release.set()
    # Once the worker is free the tool serves again.
    assert ref.ask(CallTool("slow", {"tag": "b"}), timeout=10).get().data == "b"


@pytest.fixture
def tool_peer() -> Iterator[PeerProcess]:
    peer = PeerProcess(script=TOOL_PEER)
    try:
        yield peer.start()
    finally:
        peer.stop()


def test_a_tool_on_a_second_node_is_listed_and_called_like_a_local_one(
    tool_peer: PeerProcess,
) -> None:
    with Node("tcp://127.0.0.1:0", name="agent-node") as node:
        remote = node.ref(f"tools.shout@{tool_peer.address}")
        box = ToolBox([remote, convert])
        assert sorted(s.name for s in box.specs()) == ["convert", "shout"]
        result = box.call("shout", {"text": "hi", "times": 2})
        assert result.ok and result.content == f"HI HI (pid {tool_peer.pid})"
        bad = box.call("shout", {"text": 3})
        assert not bad.ok and bad.error_type == "ToolArgumentsError"
        assert box.call("convert", {"value": 1.0}).data == 0.621
        tool_peer.kill()
        gone = box.call("shout", {"text": "anyone?"})
        assert not gone.ok and gone.error_type in ("ToolUnavailable", "ToolTimeout")


class ScriptedModel(Actor):
    """Answers each Generate with the next of its texts (the tool loop's ordering logic)."""

    def __init__(self, texts: list[str], seen: list[Generate]) -> None:
        super().__init__()
        self.texts = texts
        self.seen = seen

    @handler(Generate)
    def generate(self, msg: Generate) -> Completion:
        self.seen.append(msg)
        return Completion(self.texts.pop(0), "stop", 1, 1, 0.0, 0.0)


def test_the_tool_loop_stops_on_a_repeated_call_and_on_its_bounds() -> None:
    call = '{"tool": "convert", "arguments": {"value": 5}}'
    seen: list[Generate] = []
    model = ScriptedModel.start([call, call], seen)
    done = ToolLoop(ToolBox([convert]), max_calls=5, tool_choice="required").run(
        model, [{"role": "user", "content": "5 km in miles?"}]
    )
    assert done.stopped_by == "repeat" and len(done.calls) == 2
    assert done.calls[0].result is not None and done.calls[0].result.data == 3.107
    assert done.calls[1].result is None  # the repeat was not run
    assert "convert -> 3.107" in done.context()
    first, second = (json.loads(m.json_schema or "") for m in seen)
    assert "none" not in json.dumps(first) and "none" in json.dumps(second)  # required, then auto
    assert seen[1].messages is not None and seen[1].messages[-1]["content"].startswith("Result of")
    many = ScriptedModel.start([call, call.replace("5", "6"), call.replace("5", "7")], [])
    capped = ToolLoop(ToolBox([convert]), max_calls=2).run(many, [{"role": "user", "content": "x"}])
    assert capped.stopped_by == "max_calls" and len(capped.calls) == 2
    stop = ScriptedModel.start(['{"tool": "none"}'], [])
    assert ToolLoop(ToolBox([convert])).run(stop, []).stopped_by == "none"


def test_a_side_effecting_tool_runs_once_per_recorded_run_through_the_effect_journal(
    tmp_path: Path,
) -> None:
    paid: list[float] = []

    @tool(side_effects=True)
    def pay(amount: float) -> str:
        """Pay an amount."""
        paid.append(amount)
        return f"paid {amount}"

    journal = EffectJournal(tmp_path / "run.db", "run-1")
    keys: list[str] = []

    def effect(name: str, args: Any, fn: Any) -> Any:
        def keyed(plain: dict[str, Any], key: str) -> Any:
            keys.append(key)
            return fn(plain, key)

        return journal.perform("ada", 1, name, args, keyed)

    call = '{"tool": "pay", "arguments": {"amount": 5}}'
    for _attempt in range(2):  # the second run is a resumed one: same run, agent, turn, call
        model = ScriptedModel.start([call, '{"tool": "none"}'], [])
        done = ToolLoop(ToolBox([pay]), tool_choice="required").run(
            model, [{"role": "user", "content": "pay 5"}], effect=effect
        )
        assert done.calls[0].result is not None and done.calls[0].result.content == "paid 5.0"
        model.stop()
    assert paid == [5.0] and len(keys) == 1  # performed once, then answered from the journal
    plain = ToolLoop(ToolBox([convert])).run(
        ScriptedModel.start(['{"tool": "convert", "arguments": {"value": 1}}'] * 2, []),
        [{"role": "user", "content": "1 km?"}],
        effect=effect,
    )
    assert plain.calls[0].result is not None and len(keys) == 1  # no effects: called directly
