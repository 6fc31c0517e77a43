"""Steering the stages (issue 13) on scripted backends: per-stage budgets, answer now, think more,
re-answering from an edited or written reasoning, no reasoning, provenance saved, migrated and exported.

The same operations on the shipped demo model are in test_steering_demo.py, against the loopback
OpenAI-compatible server in test_steering_served.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from reasonchat.cli import build_parser
from reasonchat.cli.model_options import effective_config, generation_settings
from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.engine import GenerationError, StageStarted, TextChunk, TurnRunner
from reasonchat.engine.protocol import ContextOverflow, StageRequest
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.errors import UserError
from reasonchat.session import ChatSession
from reasonchat.settings import GenerationSettings
from reasonchat.store import SCHEMA_VERSION, Store
from reasonchat.template import apply_chat_template, continue_reasoning_prompt
from reasonchat.transfer import to_json, to_markdown

FIXTURES = Path(__file__).parent / "fixtures"
REASONING = "one two three four five six"
ANSWER = "the answer is here"


def script(reasoning: str = REASONING, answer: str = ANSWER):
    def play(request: StageRequest) -> str:
        return reasoning if request.stage == "reasoning" else answer

    return play


def new_conversation(question: str = "q") -> Conversation:
    conversation = Conversation(system_prompt="sys")
    conversation.add_turn(question)
    return conversation


# --- budgets ---------------------------------------------------------------------------------------


def test_each_stage_has_its_budget_and_max_new_tokens_is_the_default_of_both() -> None:
    settings = GenerationSettings(max_new_tokens=50)
    assert (settings.budget("reasoning"), settings.budget("answer")) == (50, 50)
    settings = GenerationSettings(max_new_tokens=50, reasoning_tokens=8, answer_tokens=20)
    assert (settings.budget("reasoning"), settings.budget("answer")) == (8, 20)
    assert GenerationSettings(reasoning_tokens=0).budget("reasoning") == 0  # no reasoning
    for bad in ({"reasoning_tokens": -1}, {"answer_tokens": 0}, {"answer_tokens": 2**31}):
        with pytest.raises(UserError, match="tokens must be"):
            GenerationSettings(**bad)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser("ask").parse_args(["ask", *argv, "q"])


def test_the_budget_flags_and_max_new_tokens_setting_both(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = generation_settings(parse("--reasoning-tokens", "8", "--answer-tokens", "30"))
    assert (settings.budget("reasoning"), settings.budget("answer")) == (8, 30)
    settings = generation_settings(parse("--max-new-tokens", "40", "--answer-tokens", "30"))
    assert (settings.budget("reasoning"), settings.budget("answer")) == (40, 30)
    # The flag sets both: a budget from the environment does not outrank it.
    monkeypatch.setenv("REASONCHAT_REASONING_TOKENS", "12")
    assert generation_settings(parse()).budget("reasoning") == 12
    assert generation_settings(parse("--max-new-tokens", "40")).budget("reasoning") == 40
    with pytest.raises(UserError, match="--answer-tokens must be at least 1"):
        generation_settings(parse("--answer-tokens", "0"))
    for command in ("chat", "reanswer"):
        args = build_parser(command).parse_args([command, "--reasoning-tokens", "5", *(["x"] * (command != "chat"))])
        assert generation_settings(args).budget("reasoning") == 5


def test_the_budgets_in_the_config_file(isolated_dirs: Path) -> None:
    from reasonchat.config import config_path

    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("reasoning_tokens = 64\nanswer_tokens = -3\n")
    resolved = effective_config(parse())
    assert resolved.config.reasoning_tokens == 64 and resolved.sources["reasoning_tokens"] == "config file, line 1"
    assert resolved.config.answer_tokens is None  # the bad value is skipped, with a problem
    assert any("'answer_tokens' must be at least 1" in p for p in resolved.problems)
    assert {"reasoning_tokens", "answer_tokens"} <= {key for key, _, _ in resolved.rows()}


def test_a_reasoning_cut_by_its_budget_is_answered_from_what_it_says() -> None:
    backend = ScriptedBackend(script())
    conversation = new_conversation()
    turn = TurnRunner(backend, GenerationSettings(reasoning_tokens=3, answer_tokens=2)).run(conversation)
    assert (turn.reasoning, turn.reasoning_stats.stop_reason, turn.reasoning_stats.new_tokens) == (
        "one two three ", "budget", 3
    )
    assert (turn.answer, turn.answer_stats.stop_reason) == ("the answer ", "budget")
    assert backend.requests[1].prompt == conversation.stage_prompt(0, "answer")
    assert backend.requests[1].prompt.endswith(
        "<|im_start|><|reasoning|>\none two three <|im_end|>\n<|im_start|>assistant\n"
    )


def test_a_reasoning_budget_of_0_is_no_reasoning() -> None:
    backend = ScriptedBackend(script())
    conversation = new_conversation()
    turn = TurnRunner(backend, GenerationSettings(reasoning_tokens=0)).run(conversation)
    assert [r.stage for r in backend.requests] == ["answer"]
    assert (turn.reasoning, turn.reasoning_source, turn.reasoning_stats) == ("", "none", None)
    assert backend.requests[0].prompt == (
        "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\nq<|im_end|>\n"
        "<|im_start|><|reasoning|>\n<|im_end|>\n<|im_start|>assistant\n"
    )


# --- answer now ------------------------------------------------------------------------------------


def answer_now_after(session: ChatSession, chunks: int) -> Any:
    """An on_event that asks for the answer from another thread after ``chunks`` reasoning chunks."""
    seen: list[TextChunk] = []
    done: list[bool] = []

    def on_event(event: Any) -> None:
        if isinstance(event, TextChunk) and event.stage == "reasoning":
            seen.append(event)
            if len(seen) == chunks:
                thread = threading.Thread(target=lambda: done.append(session.answer_now()))
                thread.start()
                thread.join()

    on_event.done = done  # type: ignore[attr-defined]
    return on_event


def test_answer_now_ends_the_reasoning_where_it_is_and_answers_from_it(isolated_dirs: Path) -> None:
    backend = ScriptedBackend(script(" ".join(f"w{i}" for i in range(200))), delay_s=0.002)
    store = Store.open()
    session = ChatSession(backend, new_conversation(), store=store)
    on_event = answer_now_after(session, 3)
    turn = session.ask("count", on_event)
    assert on_event.done == [True]
    assert turn.reasoning_stats.stop_reason == "answer_now"
    assert turn.reasoning.startswith("w0 w1 w2 ") and turn.reasoning_stats.new_tokens < 200
    assert (turn.answer, turn.answer_stats.stop_reason) == (ANSWER, "eos")
    assert backend.requests[-1].prompt == session.conversation.stage_prompt(1, "answer")
    assert store.get(session.conversation.id).turns[1] == turn
    assert session.answer_now() is False  # idle: nothing to end
    store.close()


def test_answer_now_does_nothing_to_the_answer_and_cancel_still_cancels_both() -> None:
    backend = ScriptedBackend(script(answer=" ".join(["a"] * 100)), delay_s=0.002)
    session = ChatSession(backend, Conversation())
    results: list[bool] = []

    def during_answer(event: Any) -> None:
        if isinstance(event, TextChunk) and event.stage == "answer" and not results:
            results.append(session.answer_now())

    turn = session.ask("q", during_answer)
    assert results == [False] and turn.answer_stats.stop_reason == "eos"

    def cancel_in_reasoning(event: Any) -> None:
        if isinstance(event, TextChunk) and event.stage == "reasoning":
            session.answer_now()
            session.cancel()

    turn = session.ask("again", cancel_in_reasoning)
    assert turn.reasoning_stats.stop_reason == "cancelled" and turn.answer is None
    # Neither the flag nor the cancel outlives its run.
    turn = session.ask("third")
    assert (turn.reasoning_stats.stop_reason, turn.answer_stats.stop_reason) == ("eos", "eos")


# --- think more ------------------------------------------------------------------------------------


def test_the_continuation_prompt_is_the_reasoning_turn_left_open() -> None:
    history = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    prompt = continue_reasoning_prompt(history, "step 1\nstep")
    assert prompt == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|><|reasoning|>\nstep 1\nstep"
    )
    closed = apply_chat_template([*history, {"role": "reasoning", "content": "step 1\nstep"}], False)
    assert prompt + "<|im_end|>\n" == closed
    assert continue_reasoning_prompt(history, "") == apply_chat_template(history)
    conversation = new_conversation("Q")
    conversation.turns[0].reasoning = "so far"
    assert conversation.continuation_prompt(0) == conversation.stage_prompt(0, "reasoning") + "so far"


def test_think_more_goes_on_from_the_cut_reasoning_then_answers_again(isolated_dirs: Path) -> None:
    backend = ScriptedBackend(script())
    store = Store.open()
    session = ChatSession(backend, new_conversation(), store=store, settings=GenerationSettings(reasoning_tokens=2))
    first = session.runner.run(session.conversation)
    assert (first.reasoning, first.answer) == ("one two ", ANSWER)
    old_chunks = list(first.reasoning_stats.chunks)
    events: list[Any] = []
    turn = session.think_more(events.append)
    continuation = backend.requests[-2]
    assert continuation.stage == "reasoning"
    assert continuation.prompt == session.conversation.stage_prompt(0, "reasoning") + "one two "
    # The scripted model starts its reasoning again; what matters is where its text goes.
    assert turn.reasoning == "one two one two " and turn.reasoning_stats.stop_reason == "budget"
    assert turn.reasoning_stats.chunks[: len(old_chunks)] == old_chunks
    assert turn.reasoning_stats.chunks[-1][1] == len(turn.reasoning)
    assert [t for t, _ in turn.reasoning_stats.chunks] == sorted(t for t, _ in turn.reasoning_stats.chunks)
    started = next(e for e in events if isinstance(e, StageStarted) and e.stage == "reasoning")
    assert started.prefix == "one two "
    assert backend.requests[-1].prompt == session.conversation.stage_prompt(0, "answer")
    assert (turn.original_reasoning, turn.original_answer) == ("one two ", ANSWER)
    # A new reasoning variant: the one it went on from is kept whole, with its chunks.
    assert [(v.reasoning, v.answer.answer) for v in turn.variants] == [("one two ", ANSWER), ("one two one two ", ANSWER)]
    assert turn.variants[0].stats.chunks == old_chunks and turn.active == 1
    assert turn.reasoning_source == "model"
    assert store.get(session.conversation.id).turns[0] == turn
    store.close()


# --- re-answer, written and skipped reasonings -----------------------------------------------------


def test_reanswer_from_an_edited_reasoning_keeps_the_models_first_one(isolated_dirs: Path) -> None:
    backend = ScriptedBackend(lambda r: "model thinks" if r.stage == "reasoning" else f"from: {r.prompt[-40:]}")
    store = Store.open()
    session = ChatSession(backend, Conversation(), store=store)
    session.ask("q")
    first_answer = session.conversation.turns[0].answer
    turn = session.reanswer("user thinks")
    assert [r.stage for r in backend.requests] == ["reasoning", "answer", "answer"]
    assert "user thinks<|im_end|>\n<|im_start|>assistant\n" in backend.requests[-1].prompt
    assert (turn.reasoning, turn.reasoning_source) == ("user thinks", "edited")
    assert turn.reasoning_stats is None  # the model's stage stats describe the model's text
    assert turn.variants[0].stats.stop_reason == "eos"
    assert (turn.original_reasoning, turn.original_answer) == ("model thinks", first_answer)
    turn = session.reanswer("edited again")  # the first pair stays the model's
    assert (turn.original_reasoning, turn.original_answer) == ("model thinks", first_answer)
    turn = session.reanswer()  # the current reasoning: still edited, a second answer of it
    assert turn.reasoning_source == "edited" and turn.reasoning == "edited again"
    # Nothing overwritten: three reasonings, the last with two answers, the newest active.
    assert [(v.source, len(v.answers)) for v in turn.variants] == [("model", 1), ("edited", 1), ("edited", 2)]
    assert turn.position == (2, 1) and turn.variant_count == 4
    saved = store.get(session.conversation.id).turns[0]
    assert saved == turn and saved.original_reasoning == "model thinks"
    store.close()


@pytest.mark.parametrize(("given", "source"), [("I think 7", "user"), ("", "none")])
def test_a_written_or_skipped_reasoning_is_not_generated(given: str, source: str) -> None:
    backend = ScriptedBackend(script())
    session = ChatSession(backend, Conversation(system_prompt=None))
    turn = session.ask("Q", reasoning=given)
    assert [r.stage for r in backend.requests] == ["answer"]
    assert backend.requests[0].prompt == (
        f"<|im_start|>user\nQ<|im_end|>\n<|im_start|><|reasoning|>\n{given}<|im_end|>\n<|im_start|>assistant\n"
    )
    assert (turn.reasoning, turn.reasoning_source, turn.reasoning_stats) == (given, source, None)
    assert turn.answer == ANSWER
    # A reasoning written over "none" is the user's.
    assert session.reanswer("now some").reasoning_source == "user"


def test_operations_on_nothing_say_so() -> None:
    session = ChatSession(ScriptedBackend(), Conversation())
    with pytest.raises(UserError, match="no turn"):
        session.reanswer("x")
    session.conversation.add_turn("q")
    with pytest.raises(UserError, match="no reasoning"):
        session.reanswer()
    with pytest.raises(UserError, match="no reasoning"):
        session.think_more()


# --- provenance: saved, migrated, exported ---------------------------------------------------------


def test_provenance_round_trips_and_is_checked() -> None:
    turn = Turn(user="u", reasoning="r", answer="a", reasoning_source="edited")
    turn.keep_first_version("m", None)
    data = turn.to_dict()
    assert data["reasoning_source"] == "edited" and data["variants"][0]["reasoning"] == "m"
    assert Turn.from_dict(data) == turn
    plain = Turn(user="u").to_dict()
    assert plain["reasoning_source"] == "model" and "variants" not in plain
    del plain["reasoning_source"]  # a file from before provenance
    assert Turn.from_dict(plain).reasoning_source == "model"
    with pytest.raises(ValueError, match="unknown reasoning source"):
        Turn.from_dict(plain | {"reasoning_source": "oracle"})
    with pytest.raises(ValueError, match="original_answer"):
        Turn.from_dict(plain | {"original_answer": 3})
    # A file of the release before variants: its first reasoning and answer become the first variant.
    old = Turn.from_dict(plain | {"reasoning": "r2", "original_reasoning": "r1", "original_answer": "a1"})
    assert [(v.reasoning, v.answer.answer) for v in old.variants] == [("r1", "a1"), ("r2", None)]
    assert old.active == 1


def test_a_database_of_schema_2_opens_with_every_conversation_intact(isolated_dirs: Path) -> None:
    path = isolated_dirs / "data" / "v2.db"
    path.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "store_v2.db", path)
    written = json.loads((FIXTURES / "store_v2.json").read_text())
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    with Store(path) as store:
        opened = [store.get(data["id"]) for data in written]
        # Exactly what the previous release wrote, plus the one new field it implies.
        assert [c.to_dict() for c in opened] == [
            data | {"turns": [t | {"reasoning_source": "model"} for t in data["turns"]]} for data in written
        ]
        assert opened[0].turns[0].reasoning_stats.stop_reason == "max_new_tokens"
        assert [s.id for s in store.list(search="imported reasoning")] == ["0e0e0e0e0e0e"]
        turn = opened[0].turns[1]
        turn.add_reasoning("mine", "edited")
        store.save_turn(opened[0], 1)
        assert store.get(opened[0].id).turns[1] == turn
        assert [s.id for s in store.list(search="mine")] == [opened[0].id]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_of_schema_3_opens_with_its_first_versions_as_variants(isolated_dirs: Path) -> None:
    path = isolated_dirs / "data" / "v3.db"
    path.parent.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "store_v3.db", path)
    written = json.loads((FIXTURES / "store_v3.json").read_text())
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    with Store(path) as store:
        opened = [store.get(data["id"]) for data in written]
        # Every conversation as the previous release read it: the active path is what it stored...
        for conversation, data in zip(opened, written, strict=True):
            assert Conversation.from_dict(data) == conversation
            assert [t.to_dict() for t in Conversation.from_dict(data).turns] == [t.to_dict() for t in conversation.turns]
        edited, again, skipped = opened[0].turns
        # ...and its kept first reasoning and answer are the first variant now.
        assert [(v.reasoning, v.source, v.answer.answer) for v in edited.variants] == [
            ("ones: 2+7=9\nresult: 2419", "model", "482 + 1937 = 2419"),
            ("ones: 2+7=9\nresult: 3000", "edited", "482 + 1937 = 3000"),
        ]
        assert edited.position == (1, 0) and edited.answer_stats.cached_tokens == 30
        # Only the answer was asked again: one reasoning, two answers.
        assert [a.answer for a in again.variants[0].answers] == ["5 - 3 = 3", "5 - 3 = 2"]
        assert again.position == (0, 1) and again.reasoning_stats.stop_reason == "answer_now"
        assert (skipped.reasoning_source, skipped.changed) == ("none", False)
        assert opened[1].turns[0].to_dict() == written[1]["turns"][0]
        # The search index was rebuilt: the active path and every other version are found.
        assert [s.id for s in store.list(search="482")] == [opened[0].id]
        assert [s.id for s in store.list(search="2419")] == [opened[0].id]
        assert [s.id for s in store.list(search="greet")] == [opened[1].id]
        assert store.list(search="2419", within="question") == []
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        assert conn.execute("SELECT count(*) FROM turns WHERE original_reasoning IS NOT NULL").fetchone() == (0,)


def test_exports_say_who_wrote_each_reasoning() -> None:
    conversation = Conversation(system_prompt=None)
    for source in ("model", "edited", "user", "none"):
        turn = conversation.add_turn(f"q {source}")
        turn.reasoning, turn.answer, turn.reasoning_source = ("" if source == "none" else "r"), "a", source
    conversation.turns[1].keep_first_version("model r", "model a")
    record = json.loads(to_json(conversation))
    assert [t["reasoning_source"] for t in record["conversation"]["turns"]] == ["model", "edited", "user", "none"]
    assert record["conversation"]["turns"][1]["variants"][0]["reasoning"] == "model r"
    markdown = to_markdown(conversation)
    assert "**Reasoning**\n" in markdown  # the model's own has no note
    assert "**Reasoning** *(reasoning edited by the user)*" in markdown
    assert "**Reasoning** *(reasoning written by the user)*" in markdown
    assert "**Reasoning** *(no reasoning (answered straight from the question))*" in markdown
    assert "*Another version (reasoning 1, answer 1: reasoning by the model):*\n\n> model r\n\nmodel a\n" in markdown


def test_the_runner_keeps_the_stats_of_a_stage_it_does_not_run() -> None:
    # Re-answering a turn whose reasoning was cancelled answers from the partial text; it is not
    # generated again (that is what retry is for).
    backend = ScriptedBackend(script())
    conversation = new_conversation()
    turn = conversation.turns[0]
    turn.reasoning, turn.reasoning_stats = "half", StageStats(stop_reason="cancelled")
    TurnRunner(backend).answer(conversation)
    assert [r.stage for r in backend.requests] == ["answer"]
    assert turn.reasoning == "half" and turn.answer == ANSWER


def test_think_more_that_cannot_fit_or_has_no_budget_changes_nothing() -> None:
    backend = ScriptedBackend(script())
    session = ChatSession(backend, new_conversation())
    session.runner.run(session.conversation)
    before = session.conversation.turns[0].to_dict()
    session.settings = GenerationSettings(reasoning_tokens=0)
    with pytest.raises(UserError, match="reasoning budget is 0"):
        session.think_more()
    session.settings = GenerationSettings()
    session.runner.context_limit = backend.count_tokens(session.conversation.continuation_prompt(0))
    with pytest.raises(ContextOverflow):
        session.think_more()
    assert session.conversation.turns[0].to_dict() == before


def test_an_operation_during_a_run_changes_nothing() -> None:
    session = ChatSession(ScriptedBackend(script()), Conversation())
    session.ask("first")
    refused: list[str] = []

    def meddle(event: Any) -> None:
        if isinstance(event, TextChunk) and event.stage == "answer" and not refused:
            for operation in (lambda: session.reanswer("mine"), session.think_more, lambda: session.ask("x")):
                with pytest.raises(GenerationError, match="already being generated"):
                    operation()
                refused.append("yes")

    turn = session.reanswer(on_event=meddle)
    assert refused == ["yes"] * 3
    assert len(session.conversation.turns) == 1
    assert (turn.reasoning, turn.reasoning_source, turn.answer) == (REASONING, "model", ANSWER)
