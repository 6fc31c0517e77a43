"""The app on a real checkpoint, built from the command line as ``reasonchat chat`` builds it: the
model loads in the background, a question fills both panes, Esc stops within one token, a tiny
context limit opens the overflow dialog, a missing model opens the error dialog.

The shipped demo model is used when its weights are present; until then, the tiny model trained by
the test helpers (it answers anything with a fixed reasoning and answer, and stops).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reasonchat import demo_model
from reasonchat.cli.app_commands import build_app
from reasonchat.store import Store
from reasonchat.tui.dialogs.error import ErrorDialog
from reasonchat.tui.dialogs.overflow import OverflowDialog
from tests.helpers.engine_fixtures import (  # noqa: F401 (fixtures)
    ForwardHook,
    byte_tokenizer_dir,
    stopping_model_dir,
)
from tests.tui.helpers import SMALL, WIDE, chat, chat_args, send, wait_for, wait_idle, wait_ready

QUESTION = "What is 12 + 7?"

pytestmark = pytest.mark.slow


@pytest.fixture
def model_dir(request: pytest.FixtureRequest) -> Path:
    if demo_model.is_available():
        return demo_model.model_dir()
    return request.getfixturevalue("stopping_model_dir")


async def test_a_question_fills_both_panes_moves_the_meter_and_is_saved(model_dir: Path) -> None:
    app = build_app(
        chat_args("--model", str(model_dir), "--threads", "1", "--max-new-tokens", "400")
    )
    meter_totals: list[int] = []
    async with app.run_test(size=WIDE) as pilot:
        screen = chat(app)
        assert "loading" in str(screen.model_status.render())  # the first frame is up before the model
        screen.watch(screen.meter, "usage", lambda usage: meter_totals.append(usage.total), init=False)
        await send(pilot, QUESTION)  # sent while loading: it waits, then runs
        await wait_ready(pilot)
        await wait_idle(pilot)
        reasoning = screen.turn_view.pane("reasoning").text
        answer = screen.turn_view.pane("answer").text
        conversation_id = screen.conversation.id
        final_total = screen.meter.usage.total
    assert reasoning.strip() and answer.strip()
    if demo_model.is_available():
        assert "19" in answer
    # Live: prompt, then reasoning and answer counts growing, then the final figures.
    assert final_total > 0 and len(set(meter_totals)) > 3, meter_totals
    with Store.open() as store:
        (turn,) = store.get(conversation_id).turns
    assert (turn.user, turn.reasoning, turn.answer) == (QUESTION, reasoning, answer)
    assert turn.reasoning_stats.stop_reason == turn.answer_stats.stop_reason == "eos"


async def test_escape_stops_the_real_model_within_one_token(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = build_app(
        chat_args("--model", str(model_dir), "--threads", "1")
    )
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        # Slow the model down (one forward pass per token) so Esc lands mid-stage.
        hook = ForwardHook(screen.backend.model, lambda call: time.sleep(0.05)).install(monkeypatch)
        cancelled_at: list[int] = []
        real_cancel = screen.session.cancel
        monkeypatch.setattr(screen.session, "cancel", lambda: (cancelled_at.append(hook.calls), real_cancel()))
        await send(pilot, QUESTION)
        pane = screen.turn_view.pane("reasoning")
        await wait_for(pilot, lambda: len(pane.text) >= 3, timeout=30)
        await pilot.press("escape")
        await wait_idle(pilot)
        shown = pane.text
        conversation_id = screen.conversation.id
    assert cancelled_at and hook.calls - cancelled_at[0] <= 1
    with Store.open() as store:
        (turn,) = store.get(conversation_id).turns
    assert turn.reasoning_stats.stop_reason == "cancelled"
    assert turn.reasoning == shown and len(shown) >= 3
    assert turn.answer is None


async def test_a_tiny_context_limit_opens_the_overflow_dialog(model_dir: Path) -> None:
    app = build_app(
        chat_args("--model", str(model_dir), "--context-limit", "12")
    )
    async with app.run_test(size=SMALL) as pilot:
        screen = chat(app)
        await wait_ready(pilot)
        await send(pilot, QUESTION)
        await wait_for(pilot, lambda: isinstance(app.screen, OverflowDialog))
        overflow = app.screen.overflow
        assert overflow.limit == 12 and overflow.prompt_tokens > 12
        await pilot.press("d")  # even with no history it cannot fit: said so, nothing lost
        await wait_for(pilot, lambda: any("does not fit" in n.message for n in app._notifications))
        assert screen.composer.text == QUESTION
        assert screen.conversation.turns == [] and app.is_running


async def test_a_missing_model_opens_the_error_dialog_and_the_app_stays(tmp_path: Path) -> None:
    app = build_app(
        chat_args("--model", str(tmp_path / "nowhere"))
    )
    async with app.run_test(size=SMALL) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorDialog), timeout=60)
        assert "model path not found" in app.screen.message
        await pilot.press("escape")
        screen = chat(app)
        assert app.screen is screen and screen.composer.has_focus
        await send(pilot, "hello?")
        assert screen.pending == "hello?"
