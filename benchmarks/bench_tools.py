"""Tool calls and structured output on the real default model (SmolLM2-135M-Instruct).

1. Tool calls: prompts across three tools (``arithmetic``, a calculator;
   ``unit_conversion``; ``capital_city``, a lookup), each answered by one decision of
   :class:`~llmos.agents.ToolLoop` under constrained decoding (``tool_choice="required"``).
   Validity: the decision parses as JSON, names one of the tools and its arguments validate
   against that tool's JSON schema (checked again here with ``jsonschema``, independently of
   the decoder). Task success: the right tool with the right arguments (numbers equal, names
   equal ignoring case).
2. Structured output: prompts answered with :func:`~llmos.agents.generate_typed` for a pydantic
   model; validity: a finished answer that pydantic validates.
3. Speed: a batch of free requests against the same batch with half its requests constrained
   (same prompts, same ``max_new_tokens``), alternating round by round: generated tokens per
   second of the whole batch, and of each kind inside the mixed batch (goal: constrained at most
   20% slower).

The prompts are sent 8 at a time, so they share the model's running batch. Prints each figure
with min / median / max where repeated, and the load average.

``--chat-template FILE`` serves the model with that Jinja chat template (one with tool support,
e.g. ``tests/chat_templates/hermes_tools.jinja``): the tools then go through the template, and
decisions name the tool in ``"name"`` instead of ``"tool"``.

Run: ``python benchmarks/bench_tools.py [--prompts 50] [--rounds 3] [--batch 8]
[--chat-template FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import jsonschema
import pydantic
import torch

import llmos.actors as actors
from llmos.actors import ActorRef
from llmos.agents import (
    StructuredOutputError,
    ToolBox,
    ToolLoop,
    generate_typed,
    schema_of,
    tool,
)
from llmos.models import Completion, Generate, ModelActor, shared_model

CAPITALS = {
    "France": "Paris",
    "Japan": "Tokyo",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Germany": "Berlin",
    "Egypt": "Cairo",
    "Canada": "Ottawa",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Greece": "Athens",
    "Chile": "Santiago",
    "Poland": "Warsaw",
    "Cuba": "Havana",
    "Ireland": "Dublin",
    "Portugal": "Lisbon",
}


@tool(name="arithmetic")
def calculator(a: float, op: Literal["+", "-", "*", "/"], b: float) -> float:
    """Arithmetic on two numbers: plus, minus, times or divided by.

    Args:
        a: the first number.
        op: the operation.
        b: the second number.
    """
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("nan")}[op]


@tool(name="unit_conversion")
def convert(value: float, unit: Literal["km_to_miles", "miles_to_km", "c_to_f", "f_to_c"]) -> float:
    """Convert units: kilometres and miles, Celsius and Fahrenheit.

    Args:
        value: the value to convert.
        unit: which conversion.
    """
    factors = {"km_to_miles": value * 0.621371, "miles_to_km": value / 0.621371}
    return factors.get(unit, value * 9 / 5 + 32 if unit == "c_to_f" else (value - 32) * 5 / 9)


@tool(name="capital_city")
def capital(country: str) -> str:
    """The capital city of a country.

    Args:
        country: the country's name.
    """
    return CAPITALS.get(country.strip().title(), "unknown")


Case = tuple[str, str, dict[str, Any]]


def tool_cases(n: int) -> list[Case]:
    """``n`` prompts spread over the three tools, with the expected call."""
    calc = [
        ("What is {a} times {b}?", "*"),
        ("Add {a} and {b}.", "+"),
        ("What is {a} minus {b}?", "-"),
        ("Divide {a} by {b}.", "/"),
    ]
    conv = [
        ("Convert {v} km to miles.", "km_to_miles"),
        ("How many kilometres are {v} miles?", "miles_to_km"),
        ("Convert {v} degrees Celsius to Fahrenheit.", "c_to_f"),
        ("What is {v} Fahrenheit in Celsius?", "f_to_c"),
    ]
    countries = list(CAPITALS)
    cases: list[Case] = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            text, op = calc[(i // 3) % len(calc)]
            a, b = 3 + (i * 7) % 40, 2 + (i * 5) % 9
            cases.append((text.format(a=a, b=b), "arithmetic", {"a": a, "op": op, "b": b}))
        elif kind == 1:
            text, unit = conv[(i // 3) % len(conv)]
            v = 5 + (i * 11) % 90
            cases.append((text.format(v=v), "unit_conversion", {"value": v, "unit": unit}))
        else:
            country = countries[(i // 3) % len(countries)]
            cases.append(
                (f"What is the capital of {country}?", "capital_city", {"country": country})
            )
    return cases


def same_call(tool_name: str, args: dict[str, Any], want_tool: str, want: dict[str, Any]) -> bool:
    if tool_name != want_tool or set(args) != set(want):
        return False
    for key, value in want.items():
        got = args[key]
        if isinstance(value, str):
            if not isinstance(got, str) or got.strip().lower() != value.lower():
                return False
        elif not isinstance(got, int | float) or abs(float(got) - value) > 1e-9:
            return False
    return True


def bench_tool_calls(model: ActorRef, n: int, batch: int) -> None:
    box = ToolBox([calculator, convert, capital])
    specs = {s.name: s for s in box.specs()}
    loop = ToolLoop(box, max_calls=1, tool_choice="required", max_new_tokens=64)
    system = {"role": "system", "content": "You are a helpful assistant."}
    cases = tool_cases(n)

    def one(case: Case) -> tuple[bool, bool, str]:
        text, want_tool, want = case
        done = loop.run(model, [system, {"role": "user", "content": text}], requester=text)
        if not done.calls:
            return False, False, f"no call ({done.stopped_by})"
        call = done.calls[0]
        try:
            decision = json.loads(call.text)
            name = decision["tool" if "tool" in decision else "name"]
            jsonschema.validate(decision["arguments"], specs[name].parameters)
        except (ValueError, KeyError, jsonschema.ValidationError) as exc:
            return False, False, f"invalid: {call.text!r} ({exc})"
        ok = same_call(name, decision["arguments"], want_tool, want)
        return True, ok, call.text

    started = time.perf_counter()
    with ThreadPoolExecutor(batch) as pool:
        results = list(pool.map(one, cases))
    seconds = time.perf_counter() - started
    valid = sum(r[0] for r in results)
    success = sum(r[1] for r in results)
    print(f"tool calls: {n} prompts x 3 tools in {seconds:.1f} s")
    print(f"  valid (parses, schema-valid): {valid}/{n} = {100 * valid / n:.1f}%")
    print(f"  task success (right tool, right arguments): {success}/{n} = {100 * success / n:.1f}%")
    for name in ("arithmetic", "unit_conversion", "capital_city"):
        mine = [r for r, c in zip(results, cases, strict=True) if c[1] == name]
        print(f"    {name}: {sum(r[1] for r in mine)}/{len(mine)} right")
    for (text, _tool, _want), r in list(zip(cases, results, strict=True))[:6]:
        print(f"    e.g. {text!r} -> {r[2]}")


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    age: int
    city: str = pydantic.Field(max_length=40)
    likes: list[Annotated[str, pydantic.Field(max_length=24)]] = pydantic.Field(max_length=3)


def structured_prompts(n: int) -> list[str]:
    names = ["Ada", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun"]
    cities = ["Paris", "Lima", "Oslo", "Cairo", "Kyoto"]
    return [
        f"{names[i % len(names)]} is {20 + i} years old, lives in {cities[i % len(cities)]} and "
        f"likes {['tea', 'chess', 'running', 'jazz'][i % 4]}. Describe this person."
        for i in range(n)
    ]


def bench_structured(model: ActorRef, n: int, batch: int) -> None:
    def one(prompt: str) -> str:
        try:
            person = generate_typed(model, prompt, Person, max_new_tokens=128, timeout=600)
        except StructuredOutputError as exc:
            return f"invalid: {exc}"
        return person.model_dump_json()

    started = time.perf_counter()
    with ThreadPoolExecutor(batch) as pool:
        results = list(pool.map(one, structured_prompts(n)))
    seconds = time.perf_counter() - started
    valid = sum(not r.startswith("invalid") for r in results)
    print(f"structured output: {n} prompts ({Person.__name__}) in {seconds:.1f} s")
    print(f"  valid (finished, validated by pydantic): {valid}/{n} = {100 * valid / n:.1f}%")
    for r in results[:3]:
        print(f"    e.g. {r}")
    for r in [r for r in results if r.startswith("invalid")][:3]:
        print(f"    {r}")


def run_batch(model: ActorRef, batch: int, tokens: int, constrained: bool) -> dict[str, float]:
    """One batch: ``batch`` requests (half constrained when asked); tokens/s by kind."""
    schema = json.dumps(schema_of(Person))
    prompts = structured_prompts(batch)
    requests = [
        Generate(
            messages=[{"role": "user", "content": p}],
            max_new_tokens=tokens,
            json_schema=schema if constrained and i % 2 == 0 else None,
        )
        for i, p in enumerate(prompts)
    ]
    started = time.perf_counter()
    replies = [model.ask(r, timeout=600) for r in requests]
    done: list[Completion] = [r.get() for r in replies]
    wall = time.perf_counter() - started
    out = {"batch": sum(d.completion_tokens for d in done) / wall}
    for kind, rows in (("constrained", done[0::2]), ("free", done[1::2] if constrained else done)):
        if constrained or kind == "free":
            out[kind] = statistics.mean(d.completion_tokens / d.generation_seconds for d in rows)
    return out


def spread(values: list[float]) -> str:
    return " / ".join(f"{v:.1f}" for v in (min(values), statistics.median(values), max(values)))


def bench_speed(model: ActorRef, rounds: int, batch: int, tokens: int) -> None:
    run_batch(model, batch, 4, True)  # warm up (compiles the schema)
    free: list[dict[str, float]] = []
    mixed: list[dict[str, float]] = []
    for _ in range(rounds):
        free.append(run_batch(model, batch, tokens, False))
        mixed.append(run_batch(model, batch, tokens, True))
    print(f"speed: batches of {batch} requests, {tokens} new tokens, {rounds} rounds alternating")
    print(f"  all-free batch, tokens/s:              {spread([f['batch'] for f in free])}")
    print(f"  half-constrained batch, tokens/s:      {spread([m['batch'] for m in mixed])}")
    print(f"  in it, per free request, tokens/s:     {spread([m['free'] for m in mixed])}")
    print(f"  in it, per constrained request, tok/s: {spread([m['constrained'] for m in mixed])}")
    ratios = [m["constrained"] / m["free"] for m in mixed]
    print(f"  constrained / free in the same batch:  {spread(ratios)} (goal >= 0.80)")
    whole = [m["batch"] / f["batch"] for f, m in zip(free, mixed, strict=True)]
    print(f"  mixed / all-free batch throughput:     {spread(whole)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--skip", default="", help="comma list of: tools, structured, speed")
    parser.add_argument("--chat-template", default=None, help="a Jinja chat template file")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    loaded = shared_model(progress=True)
    print(f"model: {loaded.name} on {loaded.device} ({loaded.dtype}), from {loaded.source}")
    template = open(args.chat_template).read() if args.chat_template else None
    model = ModelActor.start(
        max_batch_size=args.batch, batch_window=0.05, name="model", chat_template=template
    )
    if template is not None:
        print(f"chat template: {args.chat_template}")
    skip = set(args.skip.split(","))
    try:
        if "tools" not in skip:
            bench_tool_calls(model, args.prompts, args.batch)
        if "structured" not in skip:
            bench_structured(model, args.prompts, args.batch)
        if "speed" not in skip:
            bench_speed(model, args.rounds, args.batch, args.tokens)
    finally:
        actors.stop_all()
        print("load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
