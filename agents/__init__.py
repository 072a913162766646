# llmos.agents: what users touch. Agents, chat agents, dialogues, model actors, the ``llmos``
# command.
#   _agent, _agent_messages, _oplog    Agent (subclass it): validated input, operation log
#   _chat_agent                        ChatAgent: persona, model ref, bounded memory
#   _group_chat, _chat_turns, _dialogue, _selection, _termination, _transcript
#                                      GroupChat / Dialogue actors, speaker selection,
#                                      termination conditions, JSONL + Markdown transcripts
#   _human                             HumanAgent: a person at the terminal
#   _fake_model                        FakeModel: a deterministic stand-in model for tests
#   _model_messages, _model_sched      Generate / Completion / ...; FIFO and round-robin scheduling
#   _model_actor, _engine*, _streaming ModelActor (transformers + torch, batching), ModelStream
#   _cli                               the ``llmos`` console script
# Imports point one way: agents -> kernel -> transport -> actors. The names that need torch are
# imported on first use, so ``import llmos.agents`` stays fast for model-free programs.
from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING

from llmos.agents._agent import Agent, check_input, spawn
from llmos.agents._agent_messages import AgentInfo, Describe, GetOpLog, Prompt, Turn, Utterance
from llmos.agents._chat_agent import ChatAgent, ClearMemory, GetMemory, Memory, approx_tokens
from llmos.agents._dialogue import ChatTimeout, Dialogue, run_chat
from llmos.agents._fake_model import FakeModel
from llmos.agents._group_chat import GetResult, GetStatus, GroupChat, StartChat, StopChat
from llmos.agents._human import HumanAgent
from llmos.agents._model_messages import (
    Completion,
    Generate,
    GetModelStats,
    ModelStats,
    Pause,
    Resume,
    TokenChunk,
)
from llmos.agents._model_sched import BudgetExceeded
from llmos.agents._oplog import OpLog, OpRecord
from llmos.agents._selection import ModelSelector, SelectionContext, round_robin
from llmos.agents._streaming import ModelStream, StreamStalled
from llmos.agents._termination import (
    AllOf,
    AnyOf,
    ChatState,
    MaxTurns,
    Repetition,
    Termination,
    TextMention,
    Timeout,
    TokenBudget,
)
from llmos.agents._transcript import ChatResult, ConsolePrinter, Entry, TranscriptWriter

if TYPE_CHECKING:
    from llmos.agents._engine import (
        BatchSession,
        GenerateParams,
        GenerateResult,
        LoadedModel,
        ModelEngine,
        ModelOutOfMemory,
        default_cache_dir,
        default_model_file,
        load_model,
    )
    from llmos.agents._model_actor import ModelActor, shared_model

_LAZY = {
    "BatchSession": "llmos.agents._engine",
    "GenerateParams": "llmos.agents._engine",
    "GenerateResult": "llmos.agents._engine",
    "LoadedModel": "llmos.agents._engine",
    "ModelEngine": "llmos.agents._engine",
    "ModelOutOfMemory": "llmos.agents._engine",
    "default_cache_dir": "llmos.agents._engine",
    "default_model_file": "llmos.agents._engine",
    "load_model": "llmos.agents._engine",
    "ModelActor": "llmos.agents._model_actor",
    "shared_model": "llmos.agents._model_actor",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmos.agents' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


del TYPE_CHECKING  # keep the namespace to the public names


__all__ = [
    "Agent",
    "AgentInfo",
    "AllOf",
    "AnyOf",
    "BatchSession",
    "BudgetExceeded",
    "ChatAgent",
    "ChatResult",
    "ChatState",
    "ChatTimeout",
    "ClearMemory",
    "Completion",
    "ConsolePrinter",
    "Describe",
    "Dialogue",
    "Entry",
    "FakeModel",
    "Generate",
    "GenerateParams",
    "GenerateResult",
    "GetMemory",
    "GetModelStats",
    "GetOpLog",
    "GetResult",
    "GetStatus",
    "GroupChat",
    "HumanAgent",
    "LoadedModel",
    "MaxTurns",
    "Memory",
    "ModelActor",
    "ModelEngine",
    "ModelOutOfMemory",
    "ModelSelector",
    "ModelStats",
    "ModelStream",
    "OpLog",
    "OpRecord",
    "Pause",
    "Prompt",
    "Repetition",
    "Resume",
    "SelectionContext",
    "StartChat",
    "StopChat",
    "StreamStalled",
    "Termination",
    "TextMention",
    "Timeout",
    "TokenBudget",
    "TokenChunk",
    "TranscriptWriter",
    "Turn",
    "Utterance",
    "approx_tokens",
    "check_input",
    "default_cache_dir",
    "default_model_file",
    "load_model",
    "round_robin",
    "run_chat",
    "shared_model",
    "spawn",
]
