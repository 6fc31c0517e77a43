"""ChatSession: autosave at stage boundaries, overflow leaves nothing behind, cancel semantics."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reasonchat.conversation import Conversation
from reasonchat.engine import ContextOverflow, GenerationError, StageFinished, StageStarted, TextChunk
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.session import ChatSession
from reasonchat.store import Store


def test_each_stage_boundary_is_saved(isolated_dirs: Any) -> None:
    store = Store.open()
    session = ChatSession(ScriptedBackend(), Conversation(), store=store)
    snapshots: list[tuple[str, str | None, str | None]] = []

    def on_event(event: Any) -> None:
        if isinstance(event, StageStarted | StageFinished):
            turn = store.get(session.conversation.id).turns[0]
            snapshots.append((type(event).__name__ + ":" + event.stage, turn.reasoning, turn.answer))

    session.ask("hello", on_event)
    assert snapshots[0] == ("StageStarted:reasoning", "", None)  # the user message is stored at once
    assert snapshots[1][0] == "StageFinished:reasoning" and snapshots[1][1].startswith("The user asked")
    assert snapshots[-1][0] == "StageFinished:answer" and snapshots[-1][2] == "You said: **hello**"
    saved = store.get(session.conversation.id)
    assert saved.turns[0].answer_stats.stop_reason == "eos"
    assert saved.model == "scripted"


def test_an_overflowing_question_changes_nothing(isolated_dirs: Any) -> None:
    store = Store.open()
    session = ChatSession(ScriptedBackend(), Conversation(), store=store, context_limit=8)
    with pytest.raises(ContextOverflow) as info:
        session.ask("a question far too long for eight tokens of context")
    assert info.value.stage == "reasoning" and info.value.limit == 8
    assert session.conversation.turns == []
    assert store.list() == []


def test_cancel_while_idle_does_not_cancel_the_next_turn() -> None:
    session = ChatSession(ScriptedBackend(), Conversation())
    session.cancel()
    turn = session.ask("hi")
    assert turn.answer_stats.stop_reason == "eos"


def test_cancel_during_a_turn_keeps_the_partial_text(isolated_dirs: Any) -> None:
    store = Store.open()
    session = ChatSession(ScriptedBackend(delay_s=0.001), Conversation(), store=store)

    def on_event(event: Any) -> None:
        if isinstance(event, TextChunk) and event.new_tokens == 3:
            session.cancel()

    turn = session.ask("one two three four", on_event)
    assert turn.reasoning_stats.stop_reason == "cancelled" and turn.answer is None
    saved = store.get(session.conversation.id).turns[0]
    assert saved.reasoning == turn.reasoning and saved.reasoning_stats.stop_reason == "cancelled"


def test_one_turn_at_a_time() -> None:
    started, release = threading.Event(), threading.Event()

    def slow(request: Any) -> str:
        started.set()
        release.wait(5)
        return "done"

    session = ChatSession(ScriptedBackend(slow), Conversation())
    worker = threading.Thread(target=session.ask, args=("first",))
    worker.start()
    assert started.wait(5) and session.busy
    with pytest.raises(GenerationError, match="already"):
        session.retry()
    release.set()
    worker.join(5)
    assert not session.busy


def test_retry_regenerates_the_last_turn() -> None:
    answers = iter(["first", "second"])
    backend = ScriptedBackend(lambda r: "thinking" if r.stage == "reasoning" else next(answers))
    session = ChatSession(backend, Conversation())
    session.ask("q")
    assert session.retry().answer == "second"
    assert len(session.conversation.turns) == 1


def test_next_prompt_tokens_counts_the_would_be_prompt() -> None:
    backend = ScriptedBackend()
    session = ChatSession(backend, Conversation())
    expected = backend.count_tokens(
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n"
        "<|im_start|><|reasoning|>\n"
    )
    assert session.next_prompt_tokens("hi there") == expected
    assert session.conversation.turns == []
