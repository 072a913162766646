"""Durable runs on the real default model: a recorded dialogue replays from its log without
asking the model, and a live replay (same seeds, same model) gives the same tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmos.actors import stop_all
from llmos.agents import ChatAgent, ChatSetup, Dialogue, MaxTurns, replay_chat, run_chat
from llmos.models import GetModelStats, ModelStats
from llmos.models._actor import ModelActor, shared_model

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def weights() -> Iterator[Any]:
    yield shared_model()  # loaded once; each ModelActor below shares it


def _setup(max_new_tokens: int = 8, finish_sentence: int = 16) -> ChatSetup:
    model = ModelActor.start(name="model")
    limits: dict[str, Any] = {"max_new_tokens": max_new_tokens, "finish_sentence": finish_sentence}
    ada = ChatAgent.start(model, "You are Ada, a cheerful baker.", name="ada", **limits)
    rex = ChatAgent.start(model, "You are Rex, a grumpy farmer.", name="rex", **limits)
    options = {"termination": MaxTurns(2), "printer": None}
    return ChatSetup([ada, rex], "Bread or cake?", Dialogue, options)


def _requests() -> int:
    from llmos.actors import get

    stats = get("model").ask(GetModelStats(), timeout=10).get()
    assert isinstance(stats, ModelStats)
    return stats.requests


def test_replay_from_the_log_and_live_on_the_real_model(weights: Any, tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    s = _setup()
    result = run_chat(
        s.participants, s.task, chat_class=s.chat_class, record=db, timeout=300, **s.options
    )
    assert result.turns == 2 and all(e.text for e in result.utterances)
    stop_all(timeout=10)

    served = replay_chat(db, result.run_id, setup=_setup(), timeout=300)
    assert served.identical and served.served >= 2
    assert _requests() == 0  # every output came from the log
    stop_all(timeout=10)

    live = replay_chat(db, result.run_id, live=True, setup=_setup(), timeout=300)
    assert _requests() >= 2
    assert live.divergence is None, live.divergence  # seeded sampling, one request at a time
    assert live.identical
    stop_all(timeout=10)

    # Cut at 4 tokens with no sentence end: the same first 4 tokens (the same seeds), then
    # the live answer ends where the logged one went on.
    short = replay_chat(
        db, result.run_id, live=True, setup=_setup(4, finish_sentence=0), timeout=300
    )
    d = short.divergence
    assert d is not None and (d.turn, d.agent) == (1, "ada"), d
    assert d.logged.startswith(d.live) and d.logged != d.live, d
    assert d.token == 4 and d.live_tokens == () and d.logged_tokens, d
    assert "".join(d.logged_tokens).strip() and d.word <= 4, d
