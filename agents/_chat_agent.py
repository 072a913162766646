"""ChatAgent: an agent with a persona that talks through a model actor and remembers, within bounds.

Example::

    model = ModelActor.start(name="model")
    poet = ChatAgent.start(model, persona="You are a terse poet.", name="poet")
    print(poet.ask(Prompt("Describe the sea."), timeout=60).get().text)

Its memory is bounded by a token budget: when the turns outgrow it, the oldest are dropped, or
folded into a running summary. The memory survives a restart by the kernel (it is carried from
``pre_restart`` to ``post_restart``), so a ChatAgent that crashes mid-dialogue comes back
remembering the conversation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from llmos.actors import ActorRef, AgentError, handler, message
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Prompt, Turn, Utterance
from llmos.models import Completion, Generate

__all__ = ["ChatAgent", "ClearMemory", "GetMemory", "Memory", "approx_tokens"]

Summarizer = Callable[[list[dict[str, str]], str], str]


def approx_tokens(text: str) -> int:
    """A cheap token estimate (about four characters a token) for memory budgets."""
    return (len(text) + 3) // 4


@message("llmos.agents.GetMemory")
class GetMemory:
    """Ask a ChatAgent for its memory: ``{"summary": str, "turns": [...], "tokens": int}``."""


@message("llmos.agents.ClearMemory")
class ClearMemory:
    """Make a ChatAgent forget everything (the persona stays)."""


class Memory:
    """The turns a ChatAgent remembers, within a token budget.

    Args:
        budget: the most tokens the summary and the turns may take together.
        count: how tokens are counted (default :func:`approx_tokens`).

    Attributes:
        turns: ``{"role": "user"|"assistant", "content": str}`` dicts, oldest first.
        summary: what the dropped turns were about ("" when they were simply dropped).
        seen: per dialogue, the highest transcript index absorbed, so a retried turn does not
            add the same utterances twice.
        dropped: how many turns were dropped or summarised so far.
    """

    def __init__(self, budget: int, count: Callable[[str], int] = approx_tokens) -> None:
        if not isinstance(budget, int) or budget < 16:
            raise AgentError(f"a memory budget must be an int >= 16 tokens, got {budget!r}")
        self.budget = budget
        self.count = count
        self.turns: list[dict[str, str]] = []
        self.summary = ""
        self.seen: dict[str, int] = {}
        self.dropped = 0

    def tokens(self) -> int:
        """Tokens taken by the summary and the turns."""
        return self.count(self.summary) + sum(self.count(t["content"]) for t in self.turns)

    def add(self, role: str, content: str) -> None:
        """Remember one turn (consecutive turns of the same role are merged)."""
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1] = {"role": role, "content": self.turns[-1]["content"] + "\n" + content}
        else:
            self.turns.append({"role": role, "content": content})

    def overflow(self) -> list[dict[str, str]]:
        """Remove the oldest turns until within budget (the newest always stays); return them."""
        removed: list[dict[str, str]] = []
        while len(self.turns) > 1 and self.tokens() > self.budget:
            removed.append(self.turns.pop(0))
        self.dropped += len(removed)
        return removed

    def clear(self) -> None:
        """Forget everything."""
        self.turns, self.summary, self.seen = [], "", {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "turns": [dict(t) for t in self.turns],
            "tokens": self.tokens(),
        }


class ChatAgent(Agent):
    """An agent that answers through a model actor, with a persona and a bounded memory.

    In a dialogue it answers :class:`~llmos.agents.Turn`: what the others said goes into its
    memory as user turns (``"name: text"``), its own answers as assistant turns. Outside one it
    answers :class:`~llmos.agents.Prompt`. Override :meth:`gather_context` to consult tools or
    other agents before each answer.

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
        temperature: 0 for greedy (reproducible) answers.
        seed: seeds sampling (temperature > 0), so a sampled dialogue can be replayed.
        model_timeout: how long to wait for the model.
        oplog: a JSONL file for the operation log.

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
        temperature: float = 0.0,
        seed: int | None = None,
        model_timeout: float = 120.0,
        oplog: str | os.PathLike[str] | None = None,
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
        self.model_timeout = model_timeout
        self.scene = ""  # who this agent talks with, and about what (set by a dialogue)

    # -- handlers -----------------------------------------------------------------------------

    @handler(Turn)
    def on_turn(self, turn: Turn) -> Utterance:
        """Take a turn in a dialogue: remember what was said since, then answer."""
        me = self.agent_name
        others = [p for p in turn.participants if p != me]
        self.scene = (
            f"You are {me}, talking with {', '.join(others) or 'others'}. "
            f"Topic: {turn.task or 'open discussion'}. Keep your answers short."
        )
        incoming: list[dict[str, Any]] = []
        seen = self.memory.seen
        for entry in turn.new:
            if entry["index"] <= seen.get(turn.dialogue, -1):
                continue  # a retried turn: already remembered
            seen[turn.dialogue] = entry["index"]
            if entry["speaker"] == me:
                self.memory.add("assistant", entry["text"])
            else:
                self.memory.add("user", f"{entry['speaker']}: {entry['text']}")
                incoming.append(entry)
        if not self.memory.turns and turn.task:
            self.memory.add("user", turn.task)
        stop = tuple(f"\n{p}:" for p in turn.participants)
        return self.answer(incoming, turn.max_tokens, stop, turn.stream_to, turn.request_id)

    @handler(Prompt)
    def on_prompt(self, prompt: Prompt) -> Utterance:
        """Answer something said outside a dialogue."""
        text = f"{prompt.sender}: {prompt.text}" if prompt.sender else prompt.text
        self.memory.add("user", text)
        incoming = [{"speaker": prompt.sender, "text": prompt.text}]
        return self.answer(incoming, 0, (), None, "")

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
        """Ask the model for the next answer from the memory, remember it, return it."""
        self._fit_memory()
        context = self.gather_context(incoming)
        messages = self.prompt_messages(context)
        request = Generate(
            messages=messages,
            max_new_tokens=min(max_tokens, self.max_new_tokens)
            if max_tokens
            else self.max_new_tokens,
            temperature=self.temperature,
            seed=self.seed,
            stop=stop,
            truncate=True,
            stream_to=stream_to,
            requester=self.agent_name,
            request_id=request_id,
        )
        done = self.ask_agent(self._model_ref(), request, timeout=self.model_timeout)
        if not isinstance(done, Completion):
            raise AgentError(f"the model answered {type(done).__name__}, not a Completion")
        text = self.clean(done.text)
        self.memory.add("assistant", text)
        return Utterance(self.agent_name, text, done.completion_tokens, done.finish_reason)

    def prompt_messages(self, context: str = "") -> list[dict[str, str]]:
        """The chat messages sent to the model: persona, scene, summary, memory, context."""
        system = "\n\n".join(s for s in (self.persona, self.scene, self._summary_text()) if s)
        messages = [{"role": "system", "content": system}] if system else []
        turns = [dict(t) for t in self.memory.turns]
        if not turns or turns[-1]["role"] != "user":
            turns.append({"role": "user", "content": "Please go on."})
        if context:
            turns[-1] = {"role": "user", "content": turns[-1]["content"] + "\n\n" + context}
        return messages + turns

    def clean(self, text: str) -> str:
        """Tidy the model's text: strip it, and drop a leading ``"<my name>:"``."""
        text = text.strip()
        prefix = f"{self.agent_name}:"
        if text.lower().startswith(prefix.lower()):
            text = text[len(prefix) :].strip()
        return text

    def _summary_text(self) -> str:
        return f"Earlier in the conversation: {self.memory.summary}" if self.memory.summary else ""

    def _model_ref(self) -> ActorRef:
        return self.lookup(self.model) if isinstance(self.model, str) else self.model

    def _fit_memory(self) -> None:
        dropped = self.memory.overflow()
        if not dropped or self.summarize == "drop":
            return
        if callable(self.summarize):
            summary = self.summarize(dropped, self.memory.summary)
        else:
            summary = self._model_summary(dropped)
        words = str(summary).split()
        limit = max(8, self.memory.budget // 8)  # a summary never crowds out the turns
        self.memory.summary = " ".join(words[:limit])
        self.memory.overflow()

    def _model_summary(self, dropped: list[dict[str, str]]) -> str:
        text = "\n".join(t["content"] for t in dropped)
        if self.memory.summary:
            text = self.memory.summary + "\n" + text
        request = Generate(
            messages=[
                {"role": "system", "content": "Summarise the conversation in one sentence."},
                {"role": "user", "content": text[-4000:]},
            ],
            max_new_tokens=48,
            temperature=0.0,
            requester=self.agent_name,
        )
        done = self.ask_agent(self._model_ref(), request, timeout=self.model_timeout)
        return done.text.strip() if isinstance(done, Completion) else self.memory.summary

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
