"""Variants: every version of a turn kept (regenerate, re-answer, edit, think more), the tree saved,
exported and imported unchanged, listed and selected from the CLI, searched, and curated into
training data (scripted backend; the round trip through ``train`` uses a tiny real model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonchat import curation
from reasonchat.cli import main
from reasonchat.conversation import AnswerVariant, Conversation, ReasoningVariant, StageStats, Turn
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.session import ChatSession
from reasonchat.settings import GenerationSettings
from reasonchat.store import Store
from reasonchat.transfer import load_bytes, to_json
from reasonchat.variants import first_words, parse_version, position_label, versions

ANSWER = "You said: **q**"


def counting_script():
    """Reasonings and answers numbered as they are generated, so each version is told apart."""
    counts = {"reasoning": 0, "answer": 0}

    def script(request) -> str:
        counts[request.stage] += 1
        return f"{request.stage} number {counts[request.stage]}"

    return script


def session_with_one_turn(store: Store | None = None) -> ChatSession:
    session = ChatSession(ScriptedBackend(counting_script()), Conversation(), store=store)
    session.ask("q")
    return session


# --- nothing overwritten ---------------------------------------------------------------------------


def test_each_operation_adds_a_version_and_makes_it_active(isolated_dirs: Path) -> None:
    store = Store.open()
    session = session_with_one_turn(store)
    turn = session.retry()  # regenerate: a second reasoning, with its own answer
    assert [(v.reasoning, v.answer.answer) for v in turn.variants] == [
        ("reasoning number 1", "answer number 1"),
        ("reasoning number 2", "answer number 2"),
    ]
    turn = session.reanswer()  # a second answer of the second reasoning
    assert [a.answer for a in turn.variants[1].answers] == ["answer number 2", "answer number 3"]
    turn = session.reanswer("my own steps")  # an edit: a third reasoning
    assert (turn.reasoning, turn.reasoning_source, turn.answer) == ("my own steps", "edited", "answer number 4")
    session.settings = GenerationSettings(reasoning_tokens=2)
    turn = session.think_more()  # goes on from the edit, as a fourth
    assert turn.reasoning.startswith("my own steps") and turn.variants[2].reasoning == "my own steps"
    assert turn.position == (3, 0) and turn.variant_count == 5
    assert position_label(turn) == "reasoning 4/4 · answer 1/1"
    # The prompt of the next turn is the active path.
    session.ask("next")
    prompt = session.backend.requests[-2].prompt
    assert turn.reasoning in prompt and "answer number 5" in prompt and "answer number 1" not in prompt
    assert store.get(session.conversation.id).turns[0] == turn
    store.close()


def test_a_reasoning_that_does_not_fit_leaves_no_version_behind() -> None:
    from reasonchat.engine.protocol import ContextOverflow

    session = ChatSession(ScriptedBackend(), Conversation(), context_limit=40)
    with pytest.raises(ContextOverflow):  # the echo reasoning fills the context: no room to answer
        session.ask("a b c d e f g h i j k l m n")
    turn = session.conversation.turns[0]
    before = turn.to_dict()

    with pytest.raises(ContextOverflow):
        session.think_more()
    assert turn.to_dict() == before and len(turn.variants) == 1


def test_select_and_mark_are_saved(isolated_dirs: Path) -> None:
    store = Store.open()
    session = session_with_one_turn(store)
    session.retry()
    session.select(0, 0, 0)
    session.mark(0, "good")
    saved = store.get(session.conversation.id).turns[0]
    assert (saved.position, saved.reasoning, saved.mark) == ((0, 0), "reasoning number 1", "good")
    assert saved.variants[1].answer.mark is None
    store.close()


# --- the tree survives every round trip --------------------------------------------------------------

texts = st.one_of(st.none(), st.text(max_size=20))
stats = st.one_of(st.none(), st.builds(StageStats, new_tokens=st.integers(0, 50), stop_reason=st.sampled_from(["eos", "budget", "answer_now"])))
answers = st.builds(AnswerVariant, texts, stats, st.sampled_from([None, "good", "bad"]))
reasonings = st.builds(
    ReasoningVariant, texts, stats, st.sampled_from(["model", "edited", "user", "none"]),
    st.lists(answers, min_size=1, max_size=3),
).map(lambda v: v if v.active_answer < len(v.answers) else v)  # fmt: skip


@st.composite
def trees(draw) -> Turn:
    variants = draw(st.lists(reasonings, min_size=1, max_size=3))
    for variant in variants:
        variant.active_answer = draw(st.integers(0, len(variant.answers) - 1))
    active = draw(st.integers(0, len(variants) - 1))
    return Turn(draw(st.text(min_size=1, max_size=10)), variants=variants, active=active,
                created="2026-12-01T10:00:00.000+00:00")  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(trees(), min_size=1, max_size=3))
def test_random_trees_survive_the_store_and_json(tmp_path: Path, turns: list[Turn]) -> None:
    conversation = Conversation(id="7e57c0de7e57", turns=turns, title="trees")
    with Store(tmp_path / "trees.db") as store:
        store.save(conversation)
        assert store.get(conversation.id) == conversation
        assert [t.to_dict() for t in store.get(conversation.id).turns] == [t.to_dict() for t in turns]
    assert load_bytes(to_json(conversation).encode(), "x.json") == conversation


def test_a_damaged_tree_is_a_one_line_error() -> None:
    good = Turn("q", "r", "a").to_dict() | {"variants": [{"reasoning": "r", "answers": [{"answer": "a"}]}], "active": 0}
    assert Turn.from_dict(good).reasoning == "r"
    for broken, message in [
        (good | {"active": 3}, "active must be an index below 1"),
        (good | {"variants": []}, "non-empty list"),
        (good | {"variants": [{"reasoning": "r", "answers": []}]}, "non-empty 'answers'"),
        (good | {"variants": [{"reasoning": "r", "answers": [{"answer": "a", "mark": "meh"}]}]}, "unknown mark"),
    ]:
        with pytest.raises(ValueError, match=message):
            Turn.from_dict(broken)


# --- the CLI ---------------------------------------------------------------------------------------


def test_the_variants_command_lists_selects_and_marks(isolated_dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open() as store:
        session = session_with_one_turn(store)
        session.retry()
        session.reanswer()
    conv_id = session.conversation.id
    assert main(["variants", conv_id[:6]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "  1.1  reasoning  model   -     reasoning number 1 → answer number 1",
        "  2.1  reasoning  model   -     reasoning number 2 → answer number 2",
        "* 2.2  answer     model   -     reasoning number 2 → answer number 3",
    ]
    assert main(["variants", conv_id, "1", "--select", "1", "--mark", "bad", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(v["version"], v["active"], v["mark"]) for v in listed] == [("1.1", True, "bad"), ("2.1", False, None), ("2.2", False, None)]
    with Store.open() as store:
        turn = store.get(conv_id).turns[0]
        assert (turn.position, turn.answer, turn.mark) == ((0, 0), "answer number 1", "bad")
    assert main(["variants", conv_id, "--select", "3"]) == 2
    assert "this turn has 2 reasoning variant(s); there is no 3" in capsys.readouterr().err
    assert main(["variants", conv_id, "4"]) == 2
    assert "has 1 turn(s); there is no turn 4" in capsys.readouterr().err


def test_list_finds_any_version_and_can_look_in_one_stage(isolated_dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Store.open() as store:
        session = session_with_one_turn(store)
        session.retry()  # "reasoning number 1" is now an inactive version
        summary = store.list()[0]
        assert (summary.turns, summary.versions) == (1, 2)
        assert [s.id for s in store.list(search="number 1")] == [session.conversation.id]
        assert [s.id for s in store.list(search="reasoning number 1", within="reasoning")] == [session.conversation.id]
        assert store.list(search="answer number 1", within="reasoning") == []
        assert store.list(search="number", within="question") == []
    assert main(["list", "--json", "--search", "answer number 1", "--in", "answer"]) == 0
    assert [item["versions"] for item in json.loads(capsys.readouterr().out)] == [2]


def test_version_names_are_checked() -> None:
    turn = Turn("q", "r", "a")
    turn.add_answer()
    assert parse_version("1.2", turn) == (0, 1) and parse_version("1", turn) == (0, None)
    for name in ("x", "0", "2", "1.3", "1.x"):
        with pytest.raises(Exception, match="version|variant|answer"):
            parse_version(name, turn)
    assert first_words(None) == "(not generated)" and first_words("\x1b[31ma b") == "a b"


# --- curation ----------------------------------------------------------------------------------------


def marked_conversation() -> Conversation:
    conversation = Conversation(system_prompt="Be brief.")
    turn = conversation.add_turn("What is 2+2?")
    turn.reasoning, turn.answer = "2+2=5", "5"
    turn.mark = "bad"
    good = turn.add_reasoning("2+2=4", "edited")
    good.answer.answer, good.answer.mark = "4", "good"
    later = conversation.add_turn("thanks")
    later.reasoning, later.answer = "polite", "you're welcome"
    return conversation


def test_train_and_preference_records() -> None:
    conversation = marked_conversation()
    (path,) = curation.train_records([conversation])
    assert path["messages"] == conversation.history()  # the active path: the edited reasoning
    assert path["messages"][2:4] == [{"role": "<|reasoning|>", "content": "2+2=4"}, {"role": "assistant", "content": "4"}]
    (good,) = curation.train_records([conversation], marked=True)
    assert good["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "<|reasoning|>", "content": "2+2=4"},
        {"role": "assistant", "content": "4"},
    ]
    (pair,) = curation.preference_records([conversation])
    assert pair["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}]
    assert pair["chosen"][-1] == {"role": "assistant", "content": "4"}
    assert pair["rejected"] == [{"role": "<|reasoning|>", "content": "2+2=5"}, {"role": "assistant", "content": "5"}]
    text = curation.export([conversation], "preference")
    assert text.count("\n") == 1 and json.loads(text) == pair


def test_chat_edit_export_and_train_on_it(isolated_dirs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The round trip: a chat, an edited reasoning, ``export --format train``, a few ``train`` steps."""
    from tests.test_prepare_model import make_tiny_base, run_prepare, small_tokenizer

    with Store.open() as store:
        session = session_with_one_turn(store)
        session.reanswer("the edited steps")
        session.ask("and again?")
    out = tmp_path / "train.jsonl"
    assert main(["export", "--format", "train", "-o", str(out)]) == 0
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"role": "<|reasoning|>", "content": "the edited steps"} in record["messages"]
    prepared = tmp_path / "prepared"
    run_prepare(make_tiny_base(small_tokenizer(), tmp_path / "base", hidden=32), prepared)
    assert main(["train", "--model", str(prepared), "--data", str(out), "--out", str(tmp_path / "o"),
                 "--max-steps", "2", "--batch-size", "1", "--threads", "1", "--no-progress",
                 "--device", "cpu"]) == 0  # fmt: skip
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(["export", "--format", "json", "--marked"]) == 2
    assert "--marked goes with --format train" in capsys.readouterr().err


# --- think N times -----------------------------------------------------------------------------------


def test_final_answers_and_the_vote() -> None:
    from reasonchat.vote import final_answer, vote

    assert final_answer("482 + 1937 = 2419") == "2419"
    assert final_answer("It is 1,234.") == "1234"
    assert final_answer("  Blue, mostly. ") == "blue, mostly"
    assert final_answer(None) is None and final_answer("  ") is None
    agreed = vote(["= 5", "so 5", "4", None])
    assert (agreed.answer, agreed.count, agreed.samples) == ("5", 2, 4) and agreed.share == 0.5
    assert agreed.describe() == "2 of 4 agree on 5 (50%)"
    assert vote(["4", "5"]).answer == "4"  # a tie: the first reached
    assert vote([None]).describe() == "no answer in 1 sample(s)"


def test_sampling_adds_a_version_per_sample_with_its_own_seed() -> None:
    from reasonchat.errors import UserError

    backend = ScriptedBackend(counting_script())
    session = ChatSession(backend, Conversation(), settings=GenerationSettings(temperature=0.8, seed=7))
    session.ask("q")
    added = session.sample(3)
    turn = session.conversation.turns[0]
    assert added == [1, 2, 3] and turn.active == 3 and len(turn.variants) == 4
    assert [r.settings.seed for r in backend.requests[2::2]] == [8, 9, 10]
    assert session.settings.seed == 7
    greedy = ChatSession(backend, Conversation(), settings=GenerationSettings(temperature=0))
    greedy.ask("q")
    with pytest.raises(UserError, match="temperature above 0"):
        greedy.sample(2)
    with pytest.raises(UserError, match="from 1 to 64"):
        session.sample(0)


def test_ask_samples_lists_every_version_and_the_vote(isolated_dirs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the shipped demo model, sampled at a temperature: every sample is a version of the turn."""
    from reasonchat import demo_model

    if not demo_model.is_available():
        pytest.skip("the demo model's weights are not installed")
    argv = ["ask", "--json", "--threads", "1", "--samples", "3", "--temperature", "0.7", "--seed", "1",
            "What is 12 + 30?"]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in data["variants"]] == ["1.1", "2.1", "3.1"]
    assert [v["active"] for v in data["variants"]] == [False, False, True]
    finals = [v["final"] for v in data["variants"]]
    assert data["vote"]["samples"] == 3 and data["vote"]["answer"] in finals
    assert data["vote"]["count"] == finals.count(data["vote"]["answer"])
    with Store.open() as store:
        assert store.get(data["conversation_id"]).turns[0].variant_count == 3
    assert main(["ask", "--samples", "2", "--temperature", "0", "q"]) == 2
    assert "--samples needs --temperature above 0" in capsys.readouterr().err


def test_replay_plays_a_chosen_version(isolated_dirs: Path) -> None:
    import argparse

    from reasonchat.cli.replay_command import build_replay_app
    from reasonchat.errors import UserError

    with Store.open() as store:
        session = session_with_one_turn(store)
        session.retry()
    conv_id = session.conversation.id

    def args(*versions: str) -> argparse.Namespace:
        return argparse.Namespace(target=conv_id, data_dir=None, speed="instant", version=list(versions))

    assert build_replay_app(args()).conversation.turns[0].reasoning == "reasoning number 2"  # the active
    chosen = build_replay_app(args("1:1")).conversation.turns[0]
    assert (chosen.reasoning, chosen.answer) == ("reasoning number 1", "answer number 1")
    with Store.open() as store:  # nothing saved: the stored turn's active version is as it was
        assert store.get(conv_id).turns[0].position == (1, 0)
    for bad, message in [("1", "TURN:VERSION"), ("2:1", "1 turn"), ("1:3", "no 3"), ("x:1", "TURN:VERSION")]:
        with pytest.raises(UserError, match=message):
            build_replay_app(args(bad))
