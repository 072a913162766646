# llmos.agents: what users touch. Agents, chat agents, dialogues, group chats, termination.
#   _agent, _agent_messages, _oplog    Agent (subclass it): validated input, operation log
#   _chat_agent, _chat_prompt, _memory ChatAgent: persona, model ref, bounded memory; how it
#                                      shows a conversation to a small model and tidies replies
#   _group_chat, _chat_turns, _dialogue, _selection, _termination, _transcript
#                                      GroupChat / Dialogue actors, speaker selection,
#                                      termination conditions, JSONL + Markdown transcripts
#   _human                             HumanAgent: a person at the terminal
#   _runstore, _runlog, _effects, _durable
#                                      durable runs: the SQLite run log, the log actor and
#                                      the per-run recording, exactly-once effects, resume
#                                      and replay
#   _replies                           text hygiene: sentence ends, echoed labels, similarity
# Imports point one way: agents -> models -> kernel -> transport -> actors. Model actors and
# their messages live in ``llmos.models``; the ``llmos`` command in ``llmos.cli``.
from __future__ import annotations

from llmos.agents._agent import Agent, check_input, spawn
from llmos.agents._agent_messages import AgentInfo, Describe, GetOpLog, Prompt, Turn, Utterance
from llmos.agents._chat_agent import ChatAgent, ClearMemory, GetMemory
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._durable import (
    ChatSetup,
    Replay,
    build_setup,
    replay_chat,
    resume_chat,
    transcript_text,
)
from llmos.agents._effects import (
    EffectFn,
    EffectInDoubt,
    EffectJournal,
    EffectRecord,
    effect_key,
)
from llmos.agents._errors import AgentError, ChatTimeout
from llmos.agents._group_chat import GetResult, GetStatus, GroupChat, StartChat, StopChat
from llmos.agents._human import HumanAgent
from llmos.agents._memory import Memory, approx_tokens
from llmos.agents._oplog import OpLog, OpRecord
from llmos.agents._replies import (
    display_name,
    most_similar,
    similarity,
    strip_labels,
    trim_to_sentence,
)
from llmos.agents._runlog import Divergence, Recording, RunLogger
from llmos.agents._runstore import RunLogError, RunStore
from llmos.agents._selection import ModelSelector, SelectionContext, round_robin
from llmos.agents._termination import (
    AllOf,
    AnyOf,
    ChatState,
    MaxTurns,
    Repetition,
    Termination,
    TextMention,
    TimeLimit,
    TokenBudget,
)
from llmos.agents._transcript import ChatResult, ConsolePrinter, Entry, TranscriptWriter

__all__ = [
    "Agent",
    "AgentError",
    "AgentInfo",
    "AllOf",
    "AnyOf",
    "ChatAgent",
    "ChatResult",
    "ChatSetup",
    "ChatState",
    "ChatTimeout",
    "ClearMemory",
    "ConsolePrinter",
    "Describe",
    "Dialogue",
    "Divergence",
    "EffectFn",
    "EffectInDoubt",
    "EffectJournal",
    "EffectRecord",
    "Entry",
    "GetMemory",
    "GetOpLog",
    "GetResult",
    "GetStatus",
    "GroupChat",
    "HumanAgent",
    "MaxTurns",
    "Memory",
    "ModelSelector",
    "OpLog",
    "OpRecord",
    "Prompt",
    "Recording",
    "Repetition",
    "Replay",
    "RunLogError",
    "RunLogger",
    "RunStore",
    "SelectionContext",
    "StartChat",
    "StopChat",
    "Termination",
    "TextMention",
    "TimeLimit",
    "TokenBudget",
    "TranscriptWriter",
    "Turn",
    "Utterance",
    "approx_tokens",
    "build_setup",
    "check_input",
    "display_name",
    "effect_key",
    "most_similar",
    "replay_chat",
    "resume_chat",
    "round_robin",
    "run_chat",
    "similarity",
    "spawn",
    "strip_labels",
    "transcript_text",
    "trim_to_sentence",
]
