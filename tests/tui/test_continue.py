"""Continuing a saved conversation from the history with the loaded model: the KV cache is rebuilt once
(the first stage prefills the whole saved history), then reused (every later stage prefills only what
is new), and the new turns are saved under the conversation's own id."""

from __future__ import annotations

import pytest

from reasonchat import demo_model
from reasonchat.cli.app_commands import build_app
from reasonchat.conversation import Conversation
from reasonchat.store import Store
from reasonchat.tui.screens.history import HistoryScreen
from tests.tui.helpers import WIDE, chat, chat_args, send, wait_for, wait_idle, wait_ready

pytestmark = pytest.mark.slow


def saved_dialog() -> Conversation:
    conv = Conversation(title="Saved sums")
    for question, reasoning, answer in [
        ("What is 12 + 7?", "ones: 2+7=9\ntens: 1+0=1\nso 19", "12 + 7 = 19"),
        ("What is 30 - 4?", "ones: 0-4=-4, -0=-4, +10=6\ntens: 3-0=3, -1=2\nso 26", "30 - 4 = 26"),
    ]:
        turn = conv.add_turn(question)
        turn.reasoning, turn.answer = reasoning, answer
    return conv


async def test_continue_rebuilds_the_cache_once_then_reuses_it() -> None:
    assert demo_model.is_available()
    with Store.open() as store:
        saved = saved_dialog()
        store.save(saved)
    app = build_app(chat_args("--model", str(demo_model.model_dir()), "--threads", "1", "--max-new-tokens", "200"))
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        # Something else fills the cache first, as in a real session.
        await send(pilot, "What is 1 + 1?")
        await wait_idle(pilot)
        other_id = screen.conversation.id

        await pilot.press("ctrl+o")
        history = app.screen
        assert isinstance(history, HistoryScreen)
        await wait_for(pilot, lambda: history.table.row_count == 2)
        history.search_input.value = "Saved sums"
        await wait_for(pilot, lambda: history.table.row_count == 1 and history.selected_id == saved.id)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen and screen.conversation.id == saved.id)
        assert [t.user for t in screen.conversation.turns] == ["What is 12 + 7?", "What is 30 - 4?"]

        await send(pilot, "What is 5 + 6?")
        await wait_idle(pilot)
        await send(pilot, "What is 9 - 3?")
        await wait_idle(pilot)
        turns = screen.conversation.turns

    first, second = turns[2], turns[3]
    assert first.reasoning_stats and first.answer_stats and second.reasoning_stats and second.answer_stats
    # Rebuilt once: the first stage after opening prefills the whole saved history.
    assert first.reasoning_stats.cached_tokens == 0
    assert first.reasoning_stats.prompt_tokens > 60
    # Then reused: each later stage finds everything but its new tail in the cache.
    for stats, before in [
        (first.answer_stats, first.reasoning_stats),
        (second.reasoning_stats, first.answer_stats),
        (second.answer_stats, second.reasoning_stats),
    ]:
        assert stats.cached_tokens >= before.prompt_tokens, (stats, before)
        assert stats.prompt_tokens - stats.cached_tokens < 30, stats
    assert "5 + 6 = 11" in (first.answer or "")

    with Store.open() as store:
        reopened = store.get(saved.id)
        assert [t.user for t in reopened.turns][2:] == ["What is 5 + 6?", "What is 9 - 3?"]
        assert reopened.title == "Saved sums"
        assert len(store.get(other_id).turns) == 1
