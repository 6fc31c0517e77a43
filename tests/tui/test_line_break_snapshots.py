"""Line breaks as the model wrote them, on the shipped demo model's own reasoning: it writes one
column per line ("ones: 2+7=9 -> 9", "tens: ..."), and every pane shows those lines as lines — the
live panes, and the transcript's unfolded reasoning of an earlier turn.

The model runs for real (greedy, one thread: the same text every run); the clocks are frozen.
"""

from __future__ import annotations

import pytest
from textual.pilot import Pilot

from reasonchat import demo_model
from reasonchat.cli.app_commands import build_app
from reasonchat.tui.widgets.status_bar import ModelStatus
from reasonchat.tui.widgets.thinking import ThinkingIndicator
from reasonchat.tui.widgets.transcript import ReasoningFold
from tests.tui.helpers import SMALL, chat, chat_args, send, wait_idle, wait_ready

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not demo_model.is_available(), reason="the demo model's weights are not installed"),
]

TALL = (120, 36)


@pytest.fixture(autouse=True)
def frozen_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThinkingIndicator, "clock", staticmethod(lambda: 0.0))
    monkeypatch.setattr(ModelStatus, "clock", staticmethod(lambda: 0.0))


def demo_app():
    return build_app(chat_args("--model", str(demo_model.model_dir()), "--threads", "1", "--temperature", "0"))


async def ask(pilot: Pilot, question: str) -> None:
    await send(pilot, question)
    await wait_idle(pilot)


async def steady(pilot: Pilot) -> None:
    chat(pilot.app).composer.cursor_blink = False
    await wait_ready(pilot)


def test_the_demo_reasoning_keeps_its_lines_at_80x24(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        await ask(pilot, "What is 482 + 1937?")
        reasoning = chat(pilot.app).turn_view.pane("reasoning").text
        assert reasoning.count("\n") >= 4, "the demo model writes a line per column"

    assert snap_compare(demo_app(), terminal_size=SMALL, run_before=run_before)


def test_live_panes_and_the_transcript_keep_lines_at_120x36(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await steady(pilot)
        await ask(pilot, "What is 482 + 1937?")
        await ask(pilot, "What is 305 + 78?")
        fold = pilot.app.screen.query_one(ReasoningFold)
        await fold.action_toggle()  # the first turn's reasoning, unfolded in the transcript
        await pilot.pause()
        chat(pilot.app).composer.focus()
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=TALL, run_before=run_before)
