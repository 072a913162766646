"""How ChatAgents talk: seeds, decoding settings, tidy replies, near-repeats (fake models)."""

from __future__ import annotations

from typing import Any

import pytest

from llmos.actors import Actor, handler
from llmos.agents import (
    ChatAgent,
    Dialogue,
    MaxTurns,
    Repetition,
    run_chat,
)
from llmos.agents._chat_prompt import render_prompt, scene_text, tidy_reply
from llmos.models import (
    Completion,
    FakeModel,
    Generate,
    GenerateParams,
    GetModelStats,
    ModelError,
    PromptTooLarge,
)

T = 10.0


class Recorder(Actor):
    """A model that records each Generate and answers from a list (then "fine.")."""

    def __init__(self, replies: list[str], seen: list[Generate]) -> None:
        super().__init__()
        self.replies, self.seen = replies, seen

    @handler(Generate)
    def generate(self, request: Generate) -> Completion:
        self.seen.append(request)
        text = self.replies.pop(0) if self.replies else "fine."
        return Completion(text, "stop", 1, len(text.split()), 0.0, 0.0)


def dialogue(seen: list[Generate], replies: list[str], turns: int = 4, **agent: Any) -> list[str]:
    model = Recorder.start(replies, seen)
    ann = ChatAgent.start(model, "You are Ann.", name="ann", **agent)
    bob = ChatAgent.start(model, "You are Bob.", name="bob", **agent)
    result = run_chat(
        [ann, bob], "Tea?", chat_class=Dialogue, termination=MaxTurns(turns), printer=None
    )
    for ref in (ann, bob, model):
        ref.stop(timeout=T)
    return [e.text for e in result.utterances]


def test_each_turn_samples_with_its_own_seed_and_seed_changes_them() -> None:
    def seeds(**agent: Any) -> list[int | None]:
        seen: list[Generate] = []
        dialogue(
            seen, ["Tea is warm.", "Coffee wakes me.", "Milk? Never.", "Water, then."], **agent
        )
        return [r.seed for r in seen]

    first, again, other = seeds(), seeds(), seeds(seed=7)
    assert len(set(first)) == 4  # every turn its own seed
    assert first == again  # the same dialogue replays
    assert set(first).isdisjoint(other)  # another seed, another dialogue


def test_chat_agents_ask_for_sampled_repetition_controlled_sentences() -> None:
    seen: list[Generate] = []
    dialogue(seen, ["Tea wins.", "Coffee wins."], turns=2)
    first, second = seen
    assert first.temperature > 0 and first.top_p < 1
    assert first.repetition_penalty > 1 and first.no_repeat_ngram >= 3
    assert first.finish_sentence > 0 and first.stop == ("\n",)
    assert second.avoid == ("Tea wins.",)  # the latest turns are not to be copied
    GenerateParams(
        messages=[{"role": "user", "content": "x"}],
        **{
            k: getattr(second, k)
            for k in ("temperature", "top_p", "repetition_penalty", "no_repeat_ngram", "avoid")
        },
    )  # what ChatAgent asks for is a valid request


def test_a_near_repeat_is_generated_again_and_the_fresher_answer_kept() -> None:
    seen: list[Generate] = []
    said = dialogue(
        seen,
        ["Tea is best.", "Coffee is best.", "Tea is best!", "Milk, then."],
        turns=3,
    )
    assert said == ["Tea is best.", "Coffee is best.", "Milk, then."]
    third, again = seen[2], seen[3]
    assert again.seed != third.seed and again.temperature > third.temperature


def test_an_empty_answer_is_generated_again() -> None:
    seen: list[Generate] = []
    assert dialogue(seen, ["", "Hello."], turns=1) == ["Hello."]


def test_the_scene_names_the_others_and_the_history_is_bounded() -> None:
    assert scene_text("rex", ["ada"], "Cars?") == (
        "You are Rex, talking with Ada.\nThe question: Cars?\n"
        'Speak to Ada as "you". Give your own view in one or two sentences.'
    )
    assert "talking with Ada and Cy." in scene_text("rex", ["ada", "cy"], "")
    turns = [{"role": "user", "content": f"ada: line {i}\ncy: reply {i}"} for i in range(5)]
    messages = render_prompt("sys", turns, "rex", ("rex", "ada", "cy"), history=2)
    assert messages[0] == {"role": "system", "content": "sys"}
    assert messages[1]["content"] == "Ada: line 3\nCy: reply 3"  # a group: lines are named
    assert messages[-1]["content"] == "Ada: line 4\nCy: reply 4\n\n(Answer Cy.)"
    assert len(messages) == 3


@pytest.mark.parametrize(
    ("raw", "cut_short", "tidy"),
    [
        ("Rex: I disagree. Ada: no", False, "I disagree. Ada: no"),  # a label on a line only
        ("I disagree.\nAda: You would.", False, "I disagree."),
        ("You are Rex, talking with Ada. Cars are loud.", False, "Cars are loud."),
        ("Rex, I think cars are loud.", False, "Ada, I think cars are loud."),
        ("Cars are loud. Buses are", True, "Cars are loud."),
        ("Cars are loud. Buses are", False, "Cars are loud. Buses are"),
        ('"Cars are loud."', False, "Cars are loud."),
        ("I agree. TERMINATE", False, "I agree. TERMINATE"),
        ("The question: should cars go? They should.", False, "They should."),
        ("I'm Rex, talking with Ada. Cars are loud.", False, "Cars are loud."),
        ("You are Rex, speaking with Ada about cars.", False, ""),
        ("Fine. Here it goes:", False, "Fine."),
        ("Here it goes:", False, ""),
        ("You're right, Rex. It can.", False, "You're right, Ada. It can."),
        ("Fine. Rex, I agree, Rex!", False, "Fine. Ada, I agree, Ada!"),
        ("That is the kind of person Rex is.", False, "That is the kind of person Rex is."),
        ("(laughs) You see! Too loud... (laughing)", False, "You see! Too loud..."),
        ("(Sitting down with Ada)", False, ""),
        ("*smiles* Fine.", False, "Fine."),
        ("A zero-emission vehicle (ZEV) hub.", False, "A zero-emission vehicle (ZEV) hub."),
        ("Here is my view in one or two sentences: cars are loud.", False, ""),
        ("Cars are loud. I'll give my own view, in one or two sentences.", False, "Cars are loud."),
        (
            "Two sentences are enough. One or two cars.",
            False,
            "Two sentences are enough. One or two cars.",
        ),
    ],
)
def test_tidy_reply(raw: str, cut_short: bool, tidy: str) -> None:
    system = "You are Rex.\n\nYou are Rex, talking with Ada.\nThe question: Cars?"
    assert tidy_reply(raw, system, "rex", ("ada", "rex"), "ada", cut_short) == tidy


def test_the_fake_model_finishes_the_sentence_within_the_overshoot() -> None:
    fake = FakeModel.start(["one two three. four five six seven. eight"], name="fake")

    def ask(max_new: int, finish: int) -> Completion:
        request = Generate(prompt="x", max_new_tokens=max_new, finish_sentence=finish)
        done: Completion = fake.ask(request, timeout=T).get()
        return done

    fake_script = ask(2, 0)
    assert fake_script.text == "one two"
    fake.stop(timeout=T)
    fake = FakeModel.start(["one two three. four five six seven. eight"] * 3, name="fake2")
    assert (
        fake.ask(Generate(prompt="x", max_new_tokens=2, finish_sentence=4), timeout=T).get().text
        == "one two three."
    )
    assert (
        fake.ask(Generate(prompt="x", max_new_tokens=4, finish_sentence=2), timeout=T).get().text
        == "one two three. four five six"
    )  # out of overshoot: cut at the limit + 2
    assert (
        fake.ask(Generate(prompt="x", max_new_tokens=3, finish_sentence=9), timeout=T).get().text
        == "one two three."
    )


def test_decoding_settings_are_checked() -> None:
    def params(**kw: Any) -> GenerateParams:
        return GenerateParams(prompt="x", **kw)

    with pytest.raises(ModelError, match="repetition_penalty"):
        params(repetition_penalty=0.5)
    with pytest.raises(ModelError, match="no_repeat_ngram=1"):
        params(no_repeat_ngram=1)
    with pytest.raises(ModelError, match="avoid must be a tuple"):
        params(avoid="text")
    with pytest.raises(ModelError, match="finish_sentence"):
        params(finish_sentence=-1)
    assert params(avoid=["a"]).avoid == ("a",)


def test_run_chat_ends_a_chat_going_round_in_circles_by_default() -> None:
    model = FakeModel.start(["I agree (0).", "I agree (1)!", "I agree (2).", "I agree (3)!"])
    ann = ChatAgent.start(model, avoid_repeats=1.0, name="ann")
    bob = ChatAgent.start(model, avoid_repeats=1.0, name="bob")
    result = run_chat([ann, bob], "t", chat_class=Dialogue, printer=None, timeout=T)
    assert result.stopped_by == "Repetition" and result.turns == 3
    notes = [n.text for n in result.notes]
    assert notes[0].startswith("turn 2: bob nearly repeats turn 1 (ann), ")
    assert notes[1].startswith("turn 3: ann nearly repeats turn ")


def test_empty_answers_are_noted_and_end_the_chat() -> None:
    model = FakeModel.start(["", " ", "", ""], cycle=True)
    ann = ChatAgent.start(model, avoid_repeats=1.0, name="ann")
    bob = ChatAgent.start(model, avoid_repeats=1.0, name="bob")
    result = run_chat([ann, bob], "t", chat_class=Dialogue, printer=None, timeout=T)
    assert result.stopped_by == "Repetition" and result.turns == 3
    assert result.notes[0].text == "turn 1: ann said nothing"
    assert isinstance(Repetition(), Repetition)


def test_the_fake_model_logs_a_refused_told_generate_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Recorder.start([], [])  # a stream target (it never hears anything here)
    fake = FakeModel.start(["fine."], max_prompt_bytes=100, name="fake-told")
    big = [{"role": "user", "content": "x" * 200}]
    with caplog.at_level("WARNING", logger="llmos.models"):
        fake.tell(Generate(messages=big, max_new_tokens=4, stream_to=sink, request_id="big"))
        fake.tell(Generate(prompt="hi", max_new_tokens=4))  # told, and nobody to answer
        fake.tell(Generate(max_new_tokens=4, stream_to=sink, request_id="none"))  # no prompt
        done = fake.ask(Generate(prompt="hi", max_new_tokens=4), timeout=T).get()
    assert done.text == "fine."  # the fake is alive and answers in order
    with pytest.raises(PromptTooLarge):  # asked, the refusal goes to the asker
        fake.ask(Generate(messages=big, max_new_tokens=4), timeout=T).get()
    stats = fake.ask(GetModelStats(), timeout=T).get()
    assert (stats.requests, stats.refused, stats.completed) == (5, 4, 1)
    refusals = [r.getMessage() for r in caplog.records if "told Generate" in r.getMessage()]
    assert len(refusals) == 3 and "PromptTooLarge" not in refusals[0]
    assert "'big' refused: the prompt is over" in refusals[0]
    for ref in (fake, sink):
        ref.stop(timeout=T)
