# llmos.agents: what users touch. Agents, chat agents, dialogues, group chats, termination.
#   _agent, _agent_messages, _oplog,   Agent (subclass it): validated input, operation log
#   _validation                        (check_input: field types and sizes)
#   _chat_agent, _chat_agent_messages, ChatAgent: persona, model ref, bounded memory (what it
#   _chat_prompt, _memory              hears, drops or summarises); how it shows a conversation
#                                      to a small model and tidies replies
#   _group_chat, _chat_turns, _chat_control, _chat_recording, _dialogue, _selection,
#   _termination, _transcript          GroupChat / Dialogue actors, their control messages and
#                                      run-log ends, speaker selection, termination
#                                      conditions, JSONL + Markdown transcripts
#   _human                             HumanAgent: a person at the terminal
#   _runstore, _runlog, _divergence, _effects, _durable, _actor_runs
#                                      durable runs: the SQLite run log, the log actor and
#                                      the per-run recording, exactly-once effects, resume
#                                      and replay, runs of any marked actors (record_actors)
#   _replies                           text hygiene: sentence ends, echoed labels, similarity
#   _tool, _tool_actor                 @tool (schema from type hints via pydantic), ToolActor
#                                      (kernel-supervised: timeout, concurrency, typed errors)
#   _tool_calling                      ToolBox, ToolLoop: tool calls under constrained decoding
#   _tool_prompt                       how tools are shown: the chat template's tool support,
#                                      else a documented prompt format
#   _structured                        typed answers (pydantic) from a model or a ChatAgent
#   _mcp, _mcp_serve                   McpTools (an MCP server's tools as a tool actor, stdio or
#                                      HTTP), mcp_server/serve_mcp (agents served over MCP)
# Imports point one way: agents -> models -> kernel -> transport -> actors. Model actors and
# their messages live in ``llmos.models``; the ``llmos`` command in ``llmos.cli``.
from __future__ import annotations

from llmos.agents._actor_runs import ActorRun, record_actors
from llmos.agents._agent import Agent, spawn
from llmos.agents._agent_messages import AgentInfo, Describe, GetOpLog, Prompt, Turn, Utterance
from llmos.agents._chat_agent import ChatAgent
from llmos.agents._chat_agent_messages import ClearMemory, GetMemory, GetToolCalls
from llmos.agents._chat_control import GetResult, GetStatus, StartChat, StopChat
from llmos.agents._dialogue import Dialogue, run_chat
from llmos.agents._divergence import Divergence
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
from llmos.agents._errors import AgentError
from llmos.agents._group_chat import GroupChat
from llmos.agents._human import HumanAgent
from llmos.agents._mcp import McpError, McpTools
from llmos.agents._mcp_serve import mcp_server, serve_mcp
from llmos.agents._memory import Memory, approx_tokens
from llmos.agents._oplog import OpLog, OpRecord
from llmos.agents._replies import (
    display_name,
    most_similar,
    similarity,
    strip_labels,
    trim_to_sentence,
)
from llmos.agents._runlog import Recording, RunLogger
from llmos.agents._runstore import RunLogError, RunStore
from llmos.agents._selection import ModelSelector, SelectionContext, round_robin
from llmos.agents._structured import (
    AskTyped,
    StructuredOutputError,
    ask_typed,
    generate_typed,
    parse_as,
    schema_of,
)
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
from llmos.agents._tool import Tool, ToolArgumentsError, ToolError, tool
from llmos.agents._tool_actor import (
    CallTool,
    EffectLog,
    ListTools,
    ToolActor,
    ToolBusy,
    ToolCrashed,
    ToolResult,
    ToolSpec,
    ToolTimeout,
    ToolUnavailable,
    start_tools,
)
from llmos.agents._tool_calling import (
    ToolBox,
    ToolCallRecord,
    ToolLoop,
    ToolLoopResult,
)
from llmos.agents._tool_prompt import call_schema, tools_prompt
from llmos.agents._transcript import (
    ChatResult,
    ChatTimeout,
    ConsolePrinter,
    Entry,
    TranscriptWriter,
)
from llmos.agents._validation import check_input

__all__ = [
    "ActorRun",
    "Agent",
    "AgentError",
    "AgentInfo",
    "AllOf",
    "AnyOf",
    "AskTyped",
    "CallTool",
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
    "EffectLog",
    "EffectRecord",
    "Entry",
    "GetMemory",
    "GetOpLog",
    "GetResult",
    "GetStatus",
    "GetToolCalls",
    "GroupChat",
    "HumanAgent",
    "ListTools",
    "MaxTurns",
    "McpError",
    "McpTools",
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
    "StructuredOutputError",
    "Termination",
    "TextMention",
    "TimeLimit",
    "TokenBudget",
    "Tool",
    "ToolActor",
    "ToolArgumentsError",
    "ToolBox",
    "ToolBusy",
    "ToolCallRecord",
    "ToolCrashed",
    "ToolError",
    "ToolLoop",
    "ToolLoopResult",
    "ToolResult",
    "ToolSpec",
    "ToolTimeout",
    "ToolUnavailable",
    "TranscriptWriter",
    "Turn",
    "Utterance",
    "approx_tokens",
    "ask_typed",
    "build_setup",
    "call_schema",
    "check_input",
    "display_name",
    "effect_key",
    "generate_typed",
    "mcp_server",
    "most_similar",
    "parse_as",
    "record_actors",
    "replay_chat",
    "resume_chat",
    "round_robin",
    "run_chat",
    "schema_of",
    "serve_mcp",
    "similarity",
    "spawn",
    "start_tools",
    "strip_labels",
    "tool",
    "tools_prompt",
    "transcript_text",
    "trim_to_sentence",
]
