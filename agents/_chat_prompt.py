"""How a ChatAgent shows a conversation to its model: the scene, the latest turns, the cue.

Small models (SmolLM2-135M) copy whatever looks like a transcript: given ``"rex: ..."`` lines
they answer with a ``"rex:"`` line of their own, and given a long history they repeat it. So
the prompt is built for them:

- the system message is the persona plus a short scene: who the agent is, whom it talks to
  (by name), what about, and how to answer (speak to them as "you", briefly, something new);
- only the latest turns are shown: the others' as user turns, the agent's own as assistant
  turns; in a dialogue of two the other's words go unlabelled (the scene says who speaks), in
  a group each line is marked with its speaker's name;
- the last user turn ends with a cue naming whom to answer.

Everything here is a plain function of the agent's memory, so it is easy to test and to
override (:meth:`ChatAgent.prompt_messages`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llmos.agents._replies import display_name, normalize, strip_labels, trim_to_sentence

__all__ = [
    "recent_texts",
    "render_prompt",
    "scene_text",
    "split_speaker",
    "summary_messages",
    "tidy_reply",
]


def _join(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def scene_text(me: str, others: Sequence[str], task: str) -> str:
    """The scene for ``me`` talking with ``others`` about ``task`` (names as actors name them)."""
    shown = [display_name(o) for o in others]
    lines = []
    if shown:
        lines.append(f"You are {display_name(me)}, talking with {_join(shown)}.")
    if task:
        lines.append(f"The question: {task}")
    if len(shown) == 1:
        lines.append(f'Speak to {shown[0]} as "you". Give your own view in one or two sentences.')
    elif shown:
        lines.append("Speak to the others by name. Give your own view in one or two sentences.")
    return "\n".join(lines)


def split_speaker(line: str, participants: Sequence[str]) -> tuple[str, str]:
    """``("rex", "text")`` for a remembered line ``"rex: text"``; ``("", line)`` otherwise."""
    speaker, sep, text = line.partition(": ")
    if sep and speaker in participants:
        return speaker, text
    return "", line


def render_prompt(
    system: str,
    turns: Sequence[dict[str, str]],
    me: str,
    participants: Sequence[str],
    history: int,
    context: str = "",
) -> list[dict[str, str]]:
    """The chat messages for the model.

    Args:
        system: the system message (persona, scene, summary); "" for none.
        turns: the memory's turns, oldest first: the others' as user turns of ``"name: text"``
            lines, the agent's own as assistant turns.
        me: the agent's name.
        participants: everyone in the conversation (empty outside a dialogue).
        history: how many of the latest turns to show.
        context: extra text for the last user turn (tool results, say).
    """
    others = [p for p in participants if p != me]
    shown = list(turns[-history:]) if history > 0 else []
    if shown and shown[0]["role"] == "assistant" and len(turns) > len(shown):
        shown = shown[1:]  # open on what was said to the agent, not on its own words
    messages = [{"role": "system", "content": system}] if system else []
    last_speaker = ""
    for turn in shown:
        if turn["role"] != "user":
            messages.append({"role": turn["role"], "content": turn["content"]})
            continue
        lines = []
        for line in turn["content"].split("\n"):
            speaker, text = split_speaker(line, participants)
            if speaker:
                last_speaker = speaker
                lines.append(text if len(others) == 1 else f"{display_name(speaker)}: {text}")
            else:
                lines.append(line)
        messages.append({"role": "user", "content": "\n".join(lines)})
    if not shown or shown[-1]["role"] != "user":
        messages.append({"role": "user", "content": "Go on."})
    elif last_speaker and len(others) > 1:
        messages[-1]["content"] += f"\n\n(Answer {display_name(last_speaker)}.)"
    if context:
        messages[-1]["content"] += "\n\n" + context
    return messages


def recent_texts(
    turns: Sequence[dict[str, str]],
    participants: Sequence[str],
    history: int,
    own_only: bool = False,
) -> list[str]:
    """The lines of the latest ``history`` turns (the others' without their labels), oldest
    first, blank ones left out: what a new answer should not repeat; with ``own_only``, of
    the agent's own answers only."""
    texts: list[str] = []
    for turn in turns[-history:]:
        if own_only and turn["role"] != "assistant":
            continue
        for line in turn["content"].split("\n"):
            texts.append(split_speaker(line, participants)[1])
    return [t for t in texts if t.strip()]


def summary_messages(dropped: Sequence[dict[str, str]], previous: str) -> list[dict[str, str]]:
    """The chat messages asking the model to fold ``dropped`` turns and the ``previous``
    summary into one sentence."""
    text = "\n".join(t["content"] for t in dropped)
    if previous:
        text = previous + "\n" + text
    return [
        {"role": "system", "content": "Summarise the conversation in one sentence."},
        {"role": "user", "content": text[-4000:]},
    ]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?\u2026])\s+", text) if s]


def _scene_echo(me: str, participants: Sequence[str]) -> re.Pattern[str]:
    """Sentences that restate the scene instead of speaking in it."""
    names = "|".join(re.escape(display_name(p)) for p in {*participants, me} if p)
    me_shown = re.escape(display_name(me))
    parts = [
        r"^\W*the question\s*:",
        rf"^\W*(?:you are|i am|i'm)\s+{me_shown}\b",
        r"\b(?:talking|speaking) (?:with|to)\s+(?:" + (names or "$^") + r")\b",
        # the scene's own instructions, said back ("I'll answer in one or two sentences.")
        r"\bone or two sentences\b",
        r"\b(?:give|giving) (?:your|my) own view\b",
        r"\bspeak(?:ing)? to the others by name\b",
    ]
    return re.compile("|".join(parts), re.IGNORECASE)


# A stage direction opening a sentence: "(laughs) You know", "*smiles*", "(Sitting down.)".
_ASIDE = re.compile(r"^(?:\s*(?:\([^()]{1,80}\)|\*[^*\s][^*]{0,79}\*)[.!?]?)+\s*")


def _not_own_name(sentence: str, me: str, other: str) -> str:
    """``sentence`` with the speaker's own name, used to address someone, turned into the name
    of the one it answers (``other``; dropped when that is unknown): "Rex, I think" and "I
    agree, Rex." said by Rex."""
    name = re.escape(me)
    opening = re.match(rf"(?:hi|hello|hey|dear)?[,\s]*{name}\s*[,!:]\s*", sentence, re.I)
    if opening:
        rest = sentence[opening.end() :]
        sentence = f"{other}, {rest}" if other else rest[:1].upper() + rest[1:]
    return re.sub(rf",\s*{name}(?=\s*[.!?,])", f", {other}" if other else "", sentence)


def tidy_reply(
    text: str,
    system: str,
    me: str,
    participants: Sequence[str],
    addressee: str = "",
    cut_short: bool = True,
) -> str:
    """Tidy a model's reply: no speaker labels, no echoed scaffold, the right names, a whole
    sentence at the end.

    - a leading speaker label is dropped, and the text is cut where it starts speaking for
      someone else (see :func:`~llmos.agents.strip_labels`);
    - sentences copied from the system message (the persona, the scene) are dropped, and so
      are sentences that restate the scene ("The question: ...", "You are Rex, ...", "I'm
      Rex, talking with Ada.") or its instructions ("I'll say it in one or two sentences.");
    - stage directions opening a sentence ("(laughs)", "*smiles*") are dropped;
    - addressing the agent's own name ("Rex, I think", "I agree, Rex." said by Rex) is turned
      into the name of the one it answers (or dropped when that is unknown);
    - a reply cut short by the token limit, or ending on a colon, is cut after its last
      complete sentence (when it has one; a lone introduction like "Here it goes:" leaves
      nothing); a reply the model ended itself is kept to its end;
    - quotes wrapped round the whole reply are removed.

    Args:
        text: the model's reply.
        system: the system message the model was given.
        me: the agent's name.
        participants: everyone in the conversation.
        addressee: whom the agent answers ("" when unknown).
        cut_short: the generation stopped at its token limit (finish reason "length").
    """
    names = [*participants, *(display_name(p) for p in participants), me, display_name(me)]
    text = strip_labels(text, names)
    scaffold = normalize(system)
    echo = _scene_echo(me, participants)
    other = display_name(addressee) if addressee and addressee != me else ""
    kept = []
    for sentence in _sentences(text):
        sentence = _ASIDE.sub("", sentence)
        if not sentence or (len(sentence.split()) >= 3 and normalize(sentence) in scaffold):
            continue
        if not echo.search(sentence):
            kept.append(_not_own_name(sentence, display_name(me), other))
    text = " ".join(s for s in kept if s)
    text = trim_to_sentence(text) if cut_short or text.rstrip().endswith(":") else text.strip()
    if text.endswith(":"):  # an introduction to something it never said
        text = ""
    if len(text) > 1 and text[0] in '"\u201c' and text[-1] in '"\u201d' and text.count('"') <= 2:
        text = text[1:-1].strip()
    return text
