"""Dialogue quality on the default model: two-agent dialogues and three-agent group chats.

Ten fixed topics, each discussed for six turns by a pair of ChatAgents (a Dialogue) and by a
trio picked by a ModelSelector (a GroupChat), all through one ModelActor on the real default
model (SmolLM2-135M-Instruct). Every chat uses its own names, so all twenty run at once and the
model actor batches their requests. The agents take the library's defaults except the token
limit and a per-agent seed, so the figures measure what a user gets.

Figures (goals from the project's issue):

- near-duplicate rate: turns whose ``difflib`` ratio (lower case, punctuation dropped) against
  any earlier turn of the same chat is >= 0.8 (goal <= 5%);
- complete-sentence rate: turns that end on ``.``, ``!``, ``?`` or ``…`` (closing quotes and
  brackets allowed after it) (goal >= 95%);
- scaffold leaks: turns that echo the prompt's scaffold: a speaker label (``name:`` at a line's
  start, or a chat role), a scaffold phrase, or six words in a row of the speaker's persona
  (goal 0);
- task echoes: turns that repeat the topic question word for word (shown for reading);
- selector validity: selector answers that named an allowed speaker without failing (goal 100%);
- distinct-2: distinct word bigrams / all word bigrams over each chat (mean and minimum; goal
  >= 0.6);
- wrong-name rate: turns that address someone by a name that is not another participant's
  (the speaker's own, or an unknown one: a capitalised word used as a vocative), or that use a
  third-person pronoun of the wrong gender in a sentence naming a participant;
- fairness (group chats): the share of chats in which every agent spoke, and the turns each
  agent took (fewest / mean / most over all agents of all chats);
- tokens/s: completion tokens (utterances and selector answers) / wall time of the run.

These are heuristics over text; ``--transcripts DIR`` writes every chat as Markdown for reading.

Run: ``python benchmarks/bench_dialogue.py [--tokens 48] [--turns 6] [--seed 0]
[--kinds dialogue,group] [--threads N] [--transcripts DIR] [--json FILE]``
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import os
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llmos.actors as actors
from llmos.actors import ActorRef
from llmos.agents import (
    ChatAgent,
    ChatResult,
    Dialogue,
    GetResult,
    GroupChat,
    MaxTurns,
    ModelSelector,
    SelectionContext,
    StartChat,
    spawn,
)
from llmos.models import GetModelStats

TOPICS = [
    "Should cities ban cars from their centres?",
    "Is it better to work from home or from an office?",
    "Should schools give homework to young children?",
    "Is social media good for teenagers?",
    "Should museums be free to visit?",
    "Is a four-day work week a good idea?",
    "Should people eat less meat?",
    "Are electric scooters good for a city?",
    "Should every child learn to code?",
    "Is it worth learning a second language as an adult?",
]

# (name, gender) per chat: a pair for each dialogue, a trio for each group chat; all distinct.
PAIRS = [
    (("Ada", "f"), ("Rex", "m")),
    (("Mia", "f"), ("Tom", "m")),
    (("Ben", "m"), ("Zoe", "f")),
    (("Lena", "f"), ("Omar", "m")),
    (("Ivan", "m"), ("Nora", "f")),
    (("Kate", "f"), ("Hugo", "m")),
    (("Leo", "m"), ("Ruth", "f")),
    (("Ella", "f"), ("Sam", "m")),
    (("Noah", "m"), ("Iris", "f")),
    (("Jade", "f"), ("Paul", "m")),
]
TRIOS = [
    (("Wren", "f"), ("Cole", "m"), ("Eda", "f")),
    (("Finn", "m"), ("Lily", "f"), ("Dan", "m")),
    (("Rosa", "f"), ("Karl", "m"), ("Maya", "f")),
    (("Theo", "m"), ("Anna", "f"), ("Joel", "m")),
    (("Vera", "f"), ("Luke", "m"), ("Emma", "f")),
    (("Otto", "m"), ("Sara", "f"), ("Nick", "m")),
    (("Cleo", "f"), ("Ralf", "m"), ("Lisa", "f")),
    (("Gus", "m"), ("Tina", "f"), ("Mark", "m")),
    (("Nina", "f"), ("Eric", "m"), ("Dora", "f")),
    (("Axel", "m"), ("Olga", "f"), ("Pete", "m")),
]
PAIR_ROLES = (
    "You are {name}, an optimistic engineer. Argue for the idea in one or two sentences.",
    "You are {name}, a cautious teacher. Raise one concrete worry in one or two sentences.",
)
TRIO_ROLES = (
    "You are {name}, an inventive designer. Suggest one concrete idea in one or two sentences.",
    "You are {name}, a careful critic. Point out one weakness of the latest idea in one or two "
    "sentences.",
    "You are {name}, a practical organiser. Weigh the ideas and suggest a next step in one or "
    "two sentences.",
)

# Fixed phrases of the prompt scaffolds ChatAgent has used; a turn containing one leaks it.
SCAFFOLD_PHRASES = (
    "topic:",
    "talking with",
    "speaking with",
    "keep your answers short",
    "please go on",
    "<|im_start|>",
    "<|im_end|>",
    "conversation so far",
    "who should speak next",
    "in one or two sentences",
    "the question:",
    "give your own view",
    "speak to the others by name",
    "(answer ",
)
ROLE_LABELS = ("user", "assistant", "system")

# Capitalised words that open sentences or follow a comma without being anyone's name.
NOT_NAMES = set(
    """I I'm I'd I'll I've Yes No Well Sure Okay Ok OK However Also So And But Actually Indeed
    Absolutely Great True Honestly First Second Third Finally Overall Moreover Furthermore
    Additionally Plus Still Now Then Again Agreed Exactly Right Certainly Of In For As While
    Although Though Perhaps Maybe Ultimately Instead Yet Otherwise Besides Meanwhile Similarly
    Likewise Specifically Personally Fair Good Nice Wow Hmm Ah Oh Look Listen Sorry Please Thanks
    Hi Hello Hey Dear It That This These Those There Here What Why How When Where Who Which If
    We You They He She My Our Your Their His Her Its The A An To On At By With From Not Or
    Yeah Alright Interesting Definitely Clearly Obviously Unfortunately Fortunately Besides
    Together Today Tomorrow Sometimes Often Surely Cities City People Students Teachers Kids
    Children Parents Everyone Someone Nobody Anyone Museums Schools Meat Scooters Coding
    Learning Working Home Office Homework Teenagers Thus Therefore Hence Regardless Importantly
    Interestingly Admittedly Granted Nonetheless Nevertheless Basically Essentially Ideally
    Initially Lastly Next Yesterday Instead Meanwhile Like Just Even Only Because Since After
    Before During Until Unless Whether Both Either Neither Each Every All Some Many Most More
    Less Few Several Any Such Other Another Same Different Let Let's Imagine Consider Think
    Remember Note Keep Make Take Give""".split()
)
MALE = {"he", "him", "his", "himself"}
FEMALE = {"she", "her", "hers", "herself"}
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]*]*$")
_WORDS = re.compile(r"[a-z0-9']+")


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed."""
    return " ".join(_WORDS.findall(text.lower()))


def near_duplicates(texts: Sequence[str], threshold: float = 0.8) -> list[bool]:
    """For each turn: is it at least ``threshold`` similar to an earlier turn of its chat?"""
    norm = [normalize(t) for t in texts]
    flags = []
    for i, a in enumerate(norm):
        flags.append(
            any(
                a == b or (a and b and difflib.SequenceMatcher(None, a, b).ratio() >= threshold)
                for b in norm[:i]
            )
        )
    return flags


def complete_sentence(text: str) -> bool:
    """Does the turn end on a sentence boundary?"""
    return bool(_SENTENCE_END.search(text.strip()))


def distinct_2(texts: Sequence[str]) -> float:
    """Distinct word bigrams / word bigrams over the turns (within turns)."""
    bigrams: list[tuple[str, str]] = []
    for t in texts:
        words = _WORDS.findall(t.lower())
        bigrams.extend(itertools.pairwise(words))
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def _shingles(text: str, n: int = 6) -> set[str]:
    words = normalize(text).split()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def scaffold_leak(text: str, persona: str, names: Sequence[str]) -> str:
    """What of the scaffold the turn echoes ("" when nothing)."""
    low = text.lower()
    for phrase in SCAFFOLD_PHRASES:
        if phrase in low:
            return f"phrase {phrase!r}"
    for label in (*names, *ROLE_LABELS):
        if re.search(rf"(?im)^[\s*\"']*{re.escape(label.lower())}[\s*]*:", low):
            return f"label {label}:"
    echoed = _shingles(persona) & _shingles(text)
    if echoed:
        return f"persona {sorted(echoed)[0]!r}"
    return ""


def task_echo(text: str, task: str) -> bool:
    """Does the turn repeat the topic question word for word?"""
    return normalize(task) in normalize(text)


def _vocatives(text: str) -> list[str]:
    found: list[str] = []
    patterns = (
        r"(?:^|[.!?]\s+)[\"']?([A-Z][a-z]+),",  # "Rex, I think ..."
        r",\s+([A-Z][a-z]+)\s*[.!?]",  # "... I agree, Rex."
        r"\b(?:Hi|Hello|Hey|Dear|Thanks|Thank you)\s*,?\s+([A-Z][a-z]+)\b",  # "Thanks Rex"
    )
    for pattern in patterns:
        found.extend(m.group(1) for m in re.finditer(pattern, text))
    return [w for w in found if w not in NOT_NAMES]


def wrong_name(text: str, speaker: str, people: dict[str, str]) -> str:
    """How the turn gets a participant's name or pronoun wrong ("" when it does not).

    Args:
        text: the turn.
        speaker: who said it (a key of ``people``).
        people: every participant's name (capitalised) and gender ("m" or "f").
    """
    others = {n for n in people if n != speaker}
    for word in _vocatives(text):
        if word == speaker:
            return f"calls someone by the speaker's own name {word}"
        if word not in others:
            return f"calls someone {word}, who is not in the chat"
    sentences = re.split(r"(?<=[.!?])\s+", text)
    previous: set[str] = set()
    for sentence in sentences:
        named = {n for n in others if re.search(rf"\b{n}\b", sentence)}
        words = set(_WORDS.findall(sentence.lower()))
        referents = named or previous
        genders = {people[n] for n in referents}
        if referents and genders == {"m"} and words & FEMALE:
            return f"calls {'/'.join(sorted(referents))} 'she'"
        if referents and genders == {"f"} and words & MALE:
            return f"calls {'/'.join(sorted(referents))} 'he'"
        previous = named
    return ""


class CountingSelector:
    """Wraps a selector and counts its answers: valid ones, failures, and names not allowed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.invalid = 0
        self.problems: list[str] = []

    def __call__(self, ctx: SelectionContext) -> str:
        self.calls += 1
        try:
            name: str = self.inner(ctx)
        except Exception as exc:
            self.invalid += 1
            self.problems.append(f"{type(exc).__name__}: {exc}")
            raise
        if name not in ctx.candidates:
            self.invalid += 1
            self.problems.append(f"picked {name!r}")
        return name


@dataclass
class ChatFigures:
    """The figures of one chat."""

    kind: str
    topic: str
    texts: list[str]
    speakers: list[str]
    near_dup: list[bool]
    complete: list[bool]
    leaks: list[str]
    task_echoes: list[bool]
    wrong: list[str]
    distinct: float
    tokens: int
    turns_by_agent: dict[str, int]
    notes: list[str] = field(default_factory=list)


def measure(
    kind: str, result: ChatResult, people: dict[str, str], personas: dict[str, str]
) -> ChatFigures:
    """Score one finished chat."""
    said = [e for e in result.transcript if e.kind == "utterance"]
    texts = [e.text for e in said]
    speakers = [e.speaker.capitalize() for e in said]
    pairs = list(zip(texts, speakers, strict=True))
    return ChatFigures(
        kind=kind,
        topic=result.task,
        texts=texts,
        speakers=speakers,
        near_dup=near_duplicates(texts),
        complete=[complete_sentence(t) for t in texts],
        leaks=[scaffold_leak(t, personas[s], list(people)) for t, s in pairs],
        task_echoes=[task_echo(t, result.task) for t in texts],
        wrong=[wrong_name(t, s, people) for t, s in pairs],
        distinct=distinct_2(texts),
        tokens=sum(e.tokens for e in said),
        turns_by_agent={name: speakers.count(name) for name in people},
        notes=[e.text for e in result.transcript if e.kind == "note"],
    )


def _agents(
    model: ActorRef, cast: Sequence[tuple[str, str]], roles: Sequence[str], seed: int
) -> tuple[list[ActorRef], dict[str, str], dict[str, str]]:
    refs, people, personas = [], {}, {}
    for i, ((name, gender), role) in enumerate(zip(cast, roles, strict=True)):
        persona = role.format(name=name)
        people[name], personas[name] = gender, persona
        # A long model timeout: on a loaded machine a turn must wait, not be skipped.
        agent = spawn(
            ChatAgent, model, persona, seed=seed + i, model_timeout=1800.0, name=name.lower()
        )
        refs.append(agent)
    return refs, people, personas


def run_all(model: ActorRef, args: argparse.Namespace) -> tuple[list[ChatFigures], Any, float]:
    """Start every chat at once, wait for all, score them."""
    chats: list[tuple[str, ActorRef, dict[str, str], dict[str, str], CountingSelector | None]]
    chats = []
    common: dict[str, Any] = {
        "termination": MaxTurns(args.turns),
        "max_tokens": args.tokens,
        "printer": None,
        "speaker_timeout": 1800.0,
    }
    for t, topic in enumerate(TOPICS[: args.topics]):
        if "dialogue" in args.kinds:
            refs, people, personas = _agents(model, PAIRS[t], PAIR_ROLES, args.seed + 10 * t)
            chat: ActorRef = Dialogue.start(refs[0], refs[1], topic, name=f"dialogue-{t}", **common)
            chats.append(("dialogue", chat, people, personas, None))
        if "group" not in args.kinds:
            continue
        refs, people, personas = _agents(model, TRIOS[t], TRIO_ROLES, args.seed + 10 * t + 5)
        picker = ModelSelector(model, max_wait=args.max_wait, timeout=1800.0)
        selector = CountingSelector(picker)
        chat = GroupChat.start(refs, topic, selector=selector, name=f"group-{t}", **common)
        chats.append(("group", chat, people, personas, selector))
    start = time.perf_counter()
    for _kind, chat, *_ in chats:
        chat.tell(StartChat())
    results = [chat.ask(GetResult(), timeout=3600).get() for _k, chat, *_ in chats]
    wall = time.perf_counter() - start
    figures = [
        measure(kind, result, people, personas)
        for (kind, _c, people, personas, _s), result in zip(chats, results, strict=True)
    ]
    selectors = [s for *_, s in chats if s is not None]
    for _k, chat, *_ in chats:
        chat.stop(timeout=10)
    return figures, selectors, wall


def _rate(flags: Sequence[Any]) -> float:
    return 100.0 * sum(1 for f in flags if f) / len(flags) if flags else 0.0


def report(
    figures: list[ChatFigures], selectors: list[CountingSelector], wall: float, tokens: int
) -> dict[str, Any]:
    """Print the table; return the figures as a dict."""
    rows: dict[str, dict[str, Any]] = {}
    for kind in ("dialogue", "group", "all"):
        chosen = [f for f in figures if kind in ("all", f.kind)]
        turns = [i for f in chosen for i in range(len(f.texts))]

        def flat(attr: str, chosen: list[ChatFigures] = chosen) -> list[Any]:
            return [x for f in chosen for x in getattr(f, attr)]

        rows[kind] = {
            "chats": len(chosen),
            "turns": len(turns),
            "near_duplicate_pct": _rate(flat("near_dup")),
            "complete_sentence_pct": _rate(flat("complete")),
            "scaffold_leaks": sum(1 for x in flat("leaks") if x),
            "task_echoes": sum(1 for x in flat("task_echoes") if x),
            "wrong_name_pct": _rate(flat("wrong")),
            "distinct2_mean": statistics.mean(f.distinct for f in chosen) if chosen else 0.0,
            "distinct2_min": min((f.distinct for f in chosen), default=0.0),
            "empty_turns": sum(1 for x in flat("texts") if not x.strip()),
        }
    calls = sum(s.calls for s in selectors)
    invalid = sum(s.invalid for s in selectors)
    validity = 100.0 * (calls - invalid) / calls if calls else 100.0
    header = f"{'':<26}{'dialogue':>10}{'group':>10}{'all':>10}   goal"
    print(header)
    lines = [
        ("turns", "turns", "{:.0f}", ""),
        ("near-duplicate %", "near_duplicate_pct", "{:.1f}", "<= 5"),
        ("complete-sentence %", "complete_sentence_pct", "{:.1f}", ">= 95"),
        ("scaffold leaks", "scaffold_leaks", "{:.0f}", "0"),
        ("task echoes", "task_echoes", "{:.0f}", ""),
        ("wrong-name %", "wrong_name_pct", "{:.1f}", ""),
        ("distinct-2 mean", "distinct2_mean", "{:.2f}", ">= 0.6"),
        ("distinct-2 min", "distinct2_min", "{:.2f}", ""),
        ("empty turns", "empty_turns", "{:.0f}", ""),
    ]
    for label, key, fmt, goal in lines:
        cells = "".join(f"{fmt.format(rows[k][key]):>10}" for k in ("dialogue", "group", "all"))
        print(f"{label:<26}{cells}   {goal}")
    print(f"{'selector validity %':<26}{'':>10}{validity:>10.1f}{'':>10}   100")
    print(f"{'selector answers':<26}{'':>10}{calls:>10}")
    groups = [f for f in figures if f.kind == "group"]
    counts = [n for f in groups for n in f.turns_by_agent.values()]
    all_spoke = sum(1 for f in groups if min(f.turns_by_agent.values(), default=0) > 0)
    fairness = {
        "every_agent_spoke": [all_spoke, len(groups)],
        "turns_per_agent": [min(counts, default=0), max(counts, default=0)],
        "turns_per_agent_by_chat": [sorted(f.turns_by_agent.values()) for f in groups],
    }
    if groups:
        print(f"{'every agent spoke':<26}{'':>10}{f'{all_spoke}/{len(groups)}':>10}{'':>10}   all")
        print(
            f"{'turns per agent':<26}{'':>10}"
            f"{f'{min(counts)}/{statistics.mean(counts):.1f}/{max(counts)}':>10}"
            f"{'':>10}   fewest/mean/most; by chat {fairness['turns_per_agent_by_chat']}"
        )
    print(f"tokens: {tokens} in {wall:.1f} s = {tokens / wall:.1f} tokens/s (all chats at once)")
    problems = [p for s in selectors for p in s.problems]
    if problems:
        print(f"selector problems (first 3 of {len(problems)}): {problems[:3]}")
    for label, attr in (("leak", "leaks"), ("wrong name", "wrong")):
        examples = [
            (f.topic, s, t, why)
            for f in figures
            for s, t, why in zip(f.speakers, f.texts, getattr(f, attr), strict=True)
            if why
        ][:3]
        for _topic, speaker, text, why in examples:
            print(f"  {label}: {why} -- {speaker}: {text[:100]!r}")
    return {
        "rows": rows,
        "selector_validity_pct": validity,
        "selector_calls": calls,
        "fairness": fairness,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topics", type=int, default=len(TOPICS), help="topics (at most 10)")
    parser.add_argument("--turns", type=int, default=6, help="turns per chat")
    parser.add_argument("--tokens", type=int, default=48, help="most tokens per turn")
    parser.add_argument("--seed", type=int, default=0, help="first agent seed")
    parser.add_argument(
        "--kinds",
        type=lambda text: set(text.split(",")),
        default={"dialogue", "group"},
        help="which chats: dialogue, group or both (dialogue,group)",
    )
    parser.add_argument(
        "--max-wait",
        type=int,
        default=None,
        help="the selector's fairness rule (default: its own; a number above --turns turns "
        "it off, to compare)",
    )
    parser.add_argument("--transcripts", type=Path, help="write each chat here as Markdown")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); on a "
        "machine loaded by other work, 1 avoids threads spinning against each other",
    )
    args = parser.parse_args(argv)
    if not args.kinds or not args.kinds <= {"dialogue", "group"}:
        parser.error(f"--kinds takes dialogue, group or both, got {sorted(args.kinds)}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from llmos.models import ModelActor  # imports torch: only when run

    load_before = os.getloadavg()
    model = ModelActor.start(max_batch_size=2 * args.topics, name="model")
    try:
        figures, selectors, wall = run_all(model, args)
        stats = model.ask(GetModelStats(), timeout=30).get()
        load_after = os.getloadavg()
        kinds = " and ".join(
            k
            for k, chosen in (("two-agent", "dialogue"), ("three-agent", "group"))
            if chosen in args.kinds
        )
        wait = "" if args.max_wait is None else f"; selector max_wait {args.max_wait}"
        print(
            f"model: {stats.model}; {args.topics} topics x {args.turns} turns, {kinds}; "
            f"{args.tokens} tokens a turn at most; seed {args.seed}{wait}"
        )
        print(
            f"load average before {load_before[0]:.2f} {load_before[1]:.2f}, after "
            f"{load_after[0]:.2f} {load_after[1]:.2f}; batches {stats.batches}, mean size "
            f"{stats.mean_batch_size:.1f}"
        )
        out = report(figures, selectors, wall, stats.tokens_generated)
        if args.transcripts:
            args.transcripts.mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(figures):
                lines = [f"# {f.kind} {i // 2}: {f.topic}", ""]
                lines += [f"**{s}:** {t}\n" for s, t in zip(f.speakers, f.texts, strict=True)]
                lines += [f"_note: {n}_\n" for n in f.notes]
                (args.transcripts / f"{i:02d}-{f.kind}.md").write_text("\n".join(lines))
        if args.json:
            out["load_average"] = [load_before, load_after]
            out["tokens_per_s"] = stats.tokens_generated / wall
            out["chats"] = [
                {"kind": f.kind, "topic": f.topic, "speakers": f.speakers, "texts": f.texts}
                for f in figures
            ]
            args.json.write_text(json.dumps(out, indent=2))
    finally:
        actors.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
