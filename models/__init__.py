# llmos.models: model actors. A transformers model served to many agents at once, its messages,
# scheduling and streaming, and a deterministic fake for tests.
#   _messages                 Generate, TokenChunk, Completion, Cancel, Score, Scores,
#                             Tokenize, Tokens, GetModelStats, GetModelInfo, ModelInfo,
#                             GetLedger, Pause, Resume
#   _chat_tools               what a chat template renders (tools, tool calls, tool messages)
#   _sched                    Scheduler (FIFO or round-robin per requester), budgets, byte cap
#   _actor, _serve, _tally    ModelActor: one model, a running batch requests join and leave,
#                             and what it counts (ModelStats)
#   _engine, _engine_batch    ModelEngine (transformers + torch), BatchSession (continuous batching)
#   _engine_load, _engine_params, _engine_text
#                             loading (embedded GGUF, Hugging Face ids), GenerateParams, text
#   _engine_shaping, _engine_score
#                             repetition control of a request; scoring candidates (Score)
#   _streaming                ModelStream: iterate a request's tokens as they come
#   _fake                     FakeModel: a deterministic stand-in model, no torch
# Imports point one way: agents -> models -> kernel -> transport -> actors; models never imports
# agents. The names that need torch are imported on first use, so ``import llmos.models`` stays
# fast for model-free programs.
from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from ._engine_params import GenerateParams, GenerateResult, ModelOutOfMemory
from ._engine_text import ends_sentence
from ._errors import ModelError
from ._fake import FakeModel
from ._messages import (
    Cancel,
    Completion,
    Generate,
    GetLedger,
    GetModelInfo,
    GetModelStats,
    ModelInfo,
    ModelStats,
    Pause,
    Resume,
    Score,
    Scores,
    TokenChunk,
    Tokenize,
    Tokens,
)
from ._sched import BudgetExceeded, PromptTooLarge
from ._streaming import ModelStream, StreamStalled

if TYPE_CHECKING:
    from ._actor import ModelActor, shared_model
    from ._engine import (
        BatchSession,
        LoadedModel,
        ModelEngine,
        default_cache_dir,
        default_model_file,
        load_model,
    )

_LAZY = {
    "BatchSession": "._engine",
    "LoadedModel": "._engine",
    "ModelEngine": "._engine",
    "default_cache_dir": "._engine",
    "default_model_file": "._engine",
    "load_model": "._engine",
    "ModelActor": "._actor",
    "shared_model": "._actor",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmos.models' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


del TYPE_CHECKING  # keep the namespace to the public names


__all__ = [
    "BatchSession",
    "BudgetExceeded",
    "Cancel",
    "Completion",
    "FakeModel",
    "Generate",
    "GenerateParams",
    "GenerateResult",
    "GetLedger",
    "GetModelInfo",
    "GetModelStats",
    "LoadedModel",
    "ModelActor",
    "ModelEngine",
    "ModelError",
    "ModelInfo",
    "ModelOutOfMemory",
    "ModelStats",
    "ModelStream",
    "Pause",
    "PromptTooLarge",
    "Resume",
    "Score",
    "Scores",
    "StreamStalled",
    "TokenChunk",
    "Tokenize",
    "Tokens",
    "default_cache_dir",
    "default_model_file",
    "ends_sentence",
    "load_model",
    "shared_model",
]
