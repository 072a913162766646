"""ChatAgent: an agent with a persona that talks through a model actor and remembers, within bounds.

Example::

    model = ModelActor.start(name="model")
    poet = ChatAgent.start(model, persona="You are a terse poet.", name="poet")
    print(poet.ask(Prompt("Describe the sea."), timeout=60).get().text)

Its memory (``llmos.agents._memory``) is bounded by a token budget: when the turns outgrow it,
the oldest are dropped, or folded into a running summary. The memory survives a restart by the
kernel (it is carried from ``pre_restart`` to ``post_restart``), so a ChatAgent that crashes
mid-dialogue comes back remembering the conversation. Its own messages (GetMemory,
GetToolCalls, ClearMemory) are in ``llmos.agents._chat_agent_messages``.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from typing import Any, Literal

from llmos.actors import ActorRef, handler
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Prompt, Turn, Utterance
from llmos.agents._chat_agent_messages import ClearMemory, GetMemory, GetToolCalls
from llmos.agents._chat_prompt import (
    recent_texts,
    render_prompt,
    scene_text,
    split_speaker,
    summary_messages,
    tidy_reply,
)
from llmos.agents._errors import AgentError
from llmos.agents._memory import Memory, Summarizer
from llmos.agents._replies import least_repetitive
from llmos.agents._structured import AskTyped, StructuredOutputError
from llmos.agents._tool import Tool
from llmos.agents._tool_calling import ToolBox, ToolLoop
from llmos.models import Completion, Generate

__all__ = ["ChatAgent"]


class ChatAgent(Agent):
    """An agent that answers through a model actor, with a persona and a bounded memory.

    In a dialogue it answers :class:`~llmos.agents.Turn`: what the others said goes into its
    memory as user turns (``"name: text"``), its own answers as assistant turns. Outside one it
    answers :class:`~llmos.agents.Prompt`. Override :meth:`gather_context` to consult tools or
    other agents before each answer.

    Its defaults are chosen to get readable dialogue out of a small model (SmolLM2-135M):

    - the model sees the persona, a short scene (whom it talks with, about what, how to
      answer) and only the latest ``history`` turns (see ``llmos.agents._chat_prompt``);
    - it samples (``temperature``, ``top_p``) with a seed derived from ``seed``, the task and
      the turn, so a dialogue replays exactly and another ``seed`` gives another one;
    - a repetition penalty and a ban on repeated ``no_repeat_ngram``-grams, over its answer and
      the latest turns, keep it from looping or copying;
    - an answer stops at the end of a line and may run ``finish_sentence`` tokens past the
      limit to end its sentence; it is then cut after its last whole sentence, with no echoed
      speaker labels or prompt scaffold (:func:`~llmos.agents._chat_prompt.tidy_reply`);
    - an answer at least ``avoid_repeats`` alike to one of the latest turns (or empty) is
      generated once more with another seed, and the less repetitive of the two is kept.

    Args:
        model: the model actor's ref (a ModelActor, a pool, a remote one, a FakeModel), or the
            name of a running one.
        persona: the system prompt: who this agent is and how it speaks.
        description: what it does, for others (default: the persona's first sentence).
        memory_tokens: the token budget of its memory (persona excluded).
        summarize: what happens to turns that overflow the memory: "drop" (forget them),
            "model" (ask the model for a one-line summary), or a function
            ``(dropped_turns, previous_summary) -> summary``.
        max_new_tokens: the longest answer (a dialogue may ask for fewer).
        temperature: sampling temperature; 0 for greedy answers.
        top_p: nucleus sampling mass (0 < top_p <= 1).
        seed: the base of this agent's sampling seeds (each turn draws its own from it, the
            task and the turn); None derives it from the agent's name. Either way a
            dialogue replays exactly; change it to hear another one.
        repetition_penalty: penalizes tokens of its answer so far and of the latest turns
            (1.0: off).
        no_repeat_ngram: never repeats this many tokens in a row from its answer or the
            latest turns (0: off).
        finish_sentence: tokens an answer may run past its limit to end its sentence (0: none).
        history: how many of the latest turns the model sees.
        avoid_repeats: an answer at least this alike to a recent turn is generated again once
            (1.0 or more: never).
        stream: pass the model's tokens on to a dialogue that asks for them (they are the raw
            text, before the answer is tidied; off by default, so a printer shows each answer
            once, as said).
        model_timeout: how long to wait for the model.
        oplog: a JSONL file for the operation log.
        tools: tools it may call before it answers: ``@tool`` functions (started under the
            kernel), tool actors' refs (local, pooled, remote) or names. They are shown to
            the model through its chat template's tool support where it has one, else in a
            documented prompt format (see ``llmos.agents._tool_prompt``); each call is chosen
            under constrained decoding, and the results are shown to the model with the
            latest turn.
        max_tool_calls: the most tool calls before one answer.
        tool_seconds: the wall-clock budget of the tool calls before one answer.
        tool_choice: "auto" (the model may call none) or "required" (at least one call
            before each answer).

    Raises:
        AgentError: a bad argument (each says which).
    """

    def __init__(
        self,
        model: ActorRef | str,
        persona: str = "",
        *,
        description: str | None = None,
        memory_tokens: int = 1024,
        summarize: str | Summarizer = "drop",
        max_new_tokens: int = 64,
        temperature: float = 0.5,
        top_p: float = 0.9,
        seed: int | None = None,
        repetition_penalty: float = 1.15,
        no_repeat_ngram: int = 4,
        finish_sentence: int = 16,
        history: int = 6,
        avoid_repeats: float = 0.8,
        stream: bool = False,
        model_timeout: float = 120.0,
        oplog: str | os.PathLike[str] | None = None,
        tools: Sequence[Tool | ActorRef | str] = (),
        max_tool_calls: int = 3,
        tool_seconds: float = 120.0,
        tool_choice: Literal["auto", "required"] = "auto",
    ) -> None:
        if description is None and persona:
            description = persona.split(". ")[0].strip().rstrip(".")
        super().__init__(description=description, oplog=oplog)
        if not isinstance(model, ActorRef | str):
            raise AgentError(f"model must be a model actor's ref or name, got {model!r}")
        if not isinstance(persona, str) or len(persona) > self.agent_max_text_chars:
            raise AgentError("persona must be a str within agent_max_text_chars")
        if summarize not in ("drop", "model") and not callable(summarize):
            raise AgentError(f"summarize must be 'drop', 'model' or a function, got {summarize!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise AgentError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        self.model = model
        self.persona = persona
        self.memory = Memory(memory_tokens)
        self.summarize = summarize
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise AgentError(f"seed must be a non-negative int or None, got {seed!r}")
        self.seed = seed
        if not isinstance(history, int) or isinstance(history, bool) or history < 1:
            raise AgentError(f"history must be an int >= 1, got {history!r}")
        self.decoding: dict[str, Any] = {
            "top_p": top_p,
            "repetition_penalty": repetition_penalty,
            "no_repeat_ngram": no_repeat_ngram,
            "finish_sentence": finish_sentence,
        }
        self.history = history
        self.avoid_repeats = float(avoid_repeats)
        self.stream = stream
        self.model_timeout = model_timeout
        self.scene = ""  # who this agent talks with, and about what (set by a dialogue)
        self.participants: tuple[str, ...] = ()
        self.turn_key = ""  # the dialogue and turn being answered, for the seeds
        self.dialogue = ""  # the dialogue being answered ("" outside one), for the token ledger
        self.tool_loop = (
            ToolLoop(
                ToolBox(tools),
                max_tool_calls,
                tool_seconds,
                model_timeout=model_timeout,
                tool_choice=tool_choice,
            )
            if tools
            else None
        )
        self.tool_calls: dict[str, Any] = {"calls": [], "stopped_by": ""}

    def agent_turn_seconds(self) -> float:
        """A turn may wait for the model twice (a near-repeat is generated once more), so a
        dialogue waits that long for it, and a little more."""
        return max(super().agent_turn_seconds(), 2 * self.model_timeout + 10.0)

    # -- handlers -----------------------------------------------------------------------------

    @handler(Turn)
    def on_turn(self, turn: Turn) -> Utterance:
        """Take a turn in a dialogue: remember what was said since, then answer."""
        me = self.agent_name
        others = [p for p in turn.participants if p != me]
        self.scene = scene_text(me, others, turn.task)
        self.participants = tuple(turn.participants)
        self.turn_key = f"{turn.task}:{turn.turn}"  # not the chat's name: a rerun replays
        self.dialogue = turn.dialogue if isinstance(turn.dialogue, str) else ""
        incoming = self.memory.hear(turn.dialogue, turn.new, me)
        if not self.memory.turns and turn.task:
            self.memory.add("user", turn.task)
        # One paragraph a turn: a new line is where a small model starts speaking for others.
        stop = ("\n",)
        return self.answer(incoming, turn.max_tokens, stop, turn.stream_to, turn.request_id)

    @handler(Prompt)
    def on_prompt(self, prompt: Prompt) -> Utterance:
        """Answer something said outside a dialogue."""
        text = f"{prompt.sender}: {prompt.text}" if prompt.sender else prompt.text
        self.memory.add("user", text)
        self.turn_key = f"prompt:{len(self.memory.turns)}:{self.memory.dropped}"
        self.dialogue = ""
        incoming = [{"speaker": prompt.sender, "text": prompt.text}]
        return self.answer(incoming, 0, (), None, "")

    @handler(AskTyped)
    def on_ask_typed(self, ask: AskTyped) -> Any:
        """Answer with JSON data that fits ``ask.json_schema`` (constrained decoding)."""
        self.memory.add("user", f"{ask.sender}: {ask.text}" if ask.sender else ask.text)
        request = Generate(
            messages=self.prompt_messages(),
            max_new_tokens=min(ask.max_new_tokens, 1024),
            json_schema=ask.json_schema,
            truncate=True,
            requester=self.agent_name,
        )
        done = self.ask_agent(self._model_ref(), request, timeout=self.model_timeout)
        if not isinstance(done, Completion) or done.finish_reason != "stop":
            raise StructuredOutputError(
                f"{self.agent_name}'s answer was cut short ({getattr(done, 'finish_reason', '')})"
                "; ask with a larger max_new_tokens"
            )
        self.memory.add("assistant", done.text)
        return json.loads(done.text)

    @handler(GetToolCalls)
    def get_tool_calls(self, _msg: GetToolCalls) -> dict[str, Any]:
        """The tool calls made before the last answer."""
        return self.tool_calls

    @handler(GetMemory)
    def get_memory(self, _msg: GetMemory) -> dict[str, Any]:
        """What this agent remembers."""
        return self.memory.as_dict()

    @handler(ClearMemory)
    def clear_memory(self, _msg: ClearMemory) -> bool:
        """Forget everything."""
        self.memory.clear()
        return True

    # -- answering ----------------------------------------------------------------------------

    def gather_context(self, incoming: Sequence[dict[str, Any]]) -> str:
        """Extra information for the next answer (tool results, say); "" for none.

        Override to consult tools or other agents (``self.ask_agent(...)``). The text is
        shown to the model with the latest turn but not kept in memory.

        Args:
            incoming: what was said to this agent since it last spoke (``speaker``, ``text``).
        """
        return ""

    def answer(
        self,
        incoming: Sequence[dict[str, Any]],
        max_tokens: int,
        stop: tuple[str, ...],
        stream_to: ActorRef | None,
        request_id: str,
    ) -> Utterance:
        """Ask the model for the next answer from the memory, remember it, return it.

        The answer is tidied (:meth:`clean`); one that nearly repeats a recent turn, or is
        empty, is generated once more with another seed and the less repetitive one is kept.
        Tokens are streamed to ``stream_to`` only when the agent was made with
        ``stream=True``: the streamed text is the model's own, before tidying.
        """
        self._fit_memory()
        context = self.gather_context(incoming)
        results = self._call_tools() if self.tool_loop is not None else ""
        context = "\n\n".join(c for c in (context, results) if c)
        messages = self.prompt_messages(context)
        limit = min(max_tokens, self.max_new_tokens) if max_tokens else self.max_new_tokens
        # An answer built on tool results restates the question and the results ("12 times 7
        # is 84"): it steers clear of its own earlier answers only, not of what it was asked.
        recent = recent_texts(
            self.memory.turns, self.participants, self.history, own_only=bool(results)
        )
        dones: list[Completion] = []

        def reply(attempt: int) -> str:
            request = Generate(
                messages=messages,
                max_new_tokens=limit,
                temperature=self.temperature + 0.3 * attempt,
                seed=self._turn_seed(attempt),
                stop=stop,
                truncate=True,
                stream_to=stream_to if self.stream and attempt == 0 else None,
                requester=self.agent_name,
                request_id=request_id if attempt == 0 else f"{request_id}:again",
                avoid=tuple(recent[-4:]),
                dialogue=self.dialogue,
                **self.decoding,
            )
            done = self.ask_agent(self._model_ref(), request, timeout=self.model_timeout)
            if not isinstance(done, Completion):
                raise AgentError(f"the model answered {type(done).__name__}, not a Completion")
            dones.append(done)
            return self.clean(done.text, cut_short=done.finish_reason == "length")

        attempts = 2 if self.avoid_repeats < 1.0 else 1
        chosen, text = least_repetitive(reply, recent, self.avoid_repeats, attempts)
        done = dones[chosen]
        self.memory.add("assistant", text)
        return Utterance(
            self.agent_name,
            text,
            done.completion_tokens,
            done.finish_reason,
            input_tokens=sum(d.prompt_tokens for d in dones),
            output_tokens=sum(d.completion_tokens for d in dones),
            model=done.model,
        )

    def _call_tools(self) -> str:
        """Let the model call its tools (bounded); the results as context for the answer."""
        assert self.tool_loop is not None
        done = self.tool_loop.run(
            self._model_ref(),
            self.prompt_messages(),
            self.agent_name,
            ask=lambda ref, msg, timeout: self.ask_agent(ref, msg, timeout=timeout),
            effect=self.agent_effect,
        )
        self.tool_calls = {
            "calls": [c.as_dict() for c in done.calls],
            "stopped_by": done.stopped_by,
        }
        return done.context()

    def _turn_seed(self, attempt: int) -> int:
        base = self.seed if self.seed is not None else zlib.crc32(self.agent_name.encode())
        return zlib.crc32(f"{base}:{self.turn_key}:{attempt}".encode())

    def prompt_messages(self, context: str = "") -> list[dict[str, str]]:
        """The chat messages sent to the model: persona, scene and summary as the system
        message, then the latest ``history`` turns and the context (see
        ``llmos.agents._chat_prompt.render_prompt``)."""
        return render_prompt(
            self._system_text(),
            self.memory.turns,
            self.agent_name,
            self.participants,
            self.history,
            context,
        )

    def _system_text(self) -> str:
        return "\n\n".join(s for s in (self.persona, self.scene, self._summary_text()) if s)

    def clean(self, text: str, cut_short: bool = False) -> str:
        """Tidy the model's text: no speaker labels or echoed prompt, the right names, and
        (when the token limit cut it short) an end on a whole sentence (see
        ``llmos.agents._chat_prompt.tidy_reply``)."""
        heard = [t for t in self.memory.turns if t["role"] == "user"]
        addressee = ""
        if heard:
            last = heard[-1]["content"].split("\n")[-1]
            addressee = split_speaker(last, self.participants)[0]
        return tidy_reply(
            text, self._system_text(), self.agent_name, self.participants, addressee, cut_short
        )

    def _summary_text(self) -> str:
        return f"Earlier in the conversation: {self.memory.summary}" if self.memory.summary else ""

    def _model_ref(self) -> ActorRef:
        return self.lookup(self.model) if isinstance(self.model, str) else self.model

    def _fit_memory(self) -> None:
        summarize = self.summarize
        if summarize == "drop":
            self.memory.fit(None)
        else:
            self.memory.fit(summarize if callable(summarize) else self._model_summary)

    def _model_summary(self, dropped: list[dict[str, str]], previous: str) -> str:
        request = Generate(
            messages=summary_messages(dropped, previous),
            max_new_tokens=48,
            temperature=0.0,
            requester=self.agent_name,
            dialogue=self.dialogue,
        )
        done = self.ask_agent(self._model_ref(), request, timeout=self.model_timeout)
        return done.text.strip() if isinstance(done, Completion) else previous

    # -- restarts -----------------------------------------------------------------------------

    def pre_restart(self, error: BaseException) -> Any:
        """Carry the memory (and the operation log) to the restarted instance."""
        state = super().pre_restart(error)
        state["memory"] = self.memory
        state["scene"] = self.scene
        return state

    def post_restart(self, error: BaseException | None, state: Any) -> None:
        """Take the memory over from the failed instance."""
        if isinstance(state, dict) and isinstance(state.get("memory"), Memory):
            self.memory = state["memory"]
            self.scene = state.get("scene", "")
        super().post_restart(error, state)
