"""HumanAgent: a person at the terminal taking part in a dialogue.

On its turn it shows what the others said (unless the dialogue already prints it) and reads one
line. An empty line is asked again; ``/quit`` or the end of input (Ctrl-D) ends the dialogue
with that reason recorded.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import IO, ClassVar

from llmos.actors import handler
from llmos.agents._agent import Agent
from llmos.agents._agent_messages import Prompt, Turn, Utterance

__all__ = ["HumanAgent"]


class HumanAgent(Agent):
    """A participant whose turns are typed by a person.

    Args:
        input_fn: reads one line given a prompt (default: the built-in ``input``); raises
            EOFError at the end of input. Inject one in tests.
        output: where to show what the others said (default: stdout at print time).
        echo: show the others' utterances before asking (turn off when the dialogue's printer
            already shows them on the same terminal).
        quit_word: the line that ends the dialogue.
        description: what this person does in the dialogue.
        oplog: a JSONL file for the operation log.

    A dialogue waits ``agent_turn_timeout`` seconds (10 minutes) for a person's turn.
    """

    agent_description = "a human participant typing at the terminal"
    agent_turn_timeout: ClassVar[float | None] = 600.0

    def __init__(
        self,
        input_fn: Callable[[str], str] = input,
        *,
        output: IO[str] | None = None,
        echo: bool = False,
        quit_word: str = "/quit",
        description: str | None = None,
        oplog: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(description=description, oplog=oplog)
        self.input_fn = input_fn
        self.output = output
        self.echo = echo
        self.quit_word = quit_word

    @handler(Turn)
    def on_turn(self, turn: Turn) -> Utterance:
        """Show what was said (if echoing) and read this person's line."""
        if self.echo:
            out = self.output if self.output is not None else sys.stdout
            for entry in turn.new:
                if entry["speaker"] != self.agent_name:
                    out.write(f"{entry['speaker']}: {entry['text']}\n")
            out.flush()
        return self.read_line(f"{self.agent_name}> ")

    @handler(Prompt)
    def on_prompt(self, prompt: Prompt) -> Utterance:
        """Show the prompt and read the answer."""
        out = self.output if self.output is not None else sys.stdout
        out.write(f"{prompt.sender or 'someone'}: {prompt.text}\n")
        out.flush()
        return self.read_line(f"{self.agent_name}> ")

    def read_line(self, prompt: str) -> Utterance:
        """Read one non-empty line; /quit or end of input gives an ``end_chat`` utterance."""
        while True:
            try:
                line = self.input_fn(prompt)
            except EOFError:
                return Utterance(self.agent_name, "end of input", 0, "end_chat")
            line = line.strip()
            if line == self.quit_word:
                return Utterance(self.agent_name, f"typed {self.quit_word}", 0, "end_chat")
            if line:
                return Utterance(self.agent_name, line[: self.agent_max_text_chars])
