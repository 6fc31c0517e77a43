"""SVG snapshots of the main states, with a scripted backend and frozen clocks.

After an intended change of the look: ``pytest tests/tui/test_snapshots.py --snapshot-update``, then
review the SVGs in ``__snapshots__``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from textual.pilot import Pilot

from reasonchat.conversation import Conversation
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.session import ChatSession
from reasonchat.store import Store
from reasonchat.budget import ContextUsage
from reasonchat.tui.widgets.status_bar import ModelStatus
from reasonchat.tui.widgets.thinking import ThinkingIndicator
from tests.tui.helpers import SMALL, WIDE, PausingBackend, chat, make_app, send, wait_for, wait_idle, wait_ready

QUESTION = "Why is the sky blue?"


def script(request) -> str:
    if request.stage == "reasoning":
        return (
            "Sunlight holds every colour.\n\n"
            "- Air molecules scatter short wavelengths more (Rayleigh: ~1/λ⁴).\n"
            "- Blue is scattered about **5×** more than red.\n\n"
            "So the sky looks blue; violet is absorbed higher up and our eyes favour blue."
        )
    return "Because air scatters **blue** light much more than red (*Rayleigh scattering*)."


@pytest.fixture(autouse=True)
def frozen_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ThinkingIndicator, "clock", staticmethod(lambda: 0.0))
    monkeypatch.setattr(ModelStatus, "clock", staticmethod(lambda: 0.0))


@pytest.fixture
def released() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def steady(run_before=None):
    """``run_before`` for snap_compare, after switching off the composer's cursor blink (its phase
    depends on timing)."""

    async def wrapped(pilot: Pilot) -> None:
        await pilot.pause()  # composed
        chat(pilot.app).composer.cursor_blink = False
        if run_before is not None:
            await run_before(pilot)

    return wrapped


def answered(question: str = QUESTION):
    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        await send(pilot, question)
        await wait_idle(pilot)

    return steady(run_before)


def test_empty(snap_compare) -> None:
    app = make_app(ScriptedBackend(script))
    assert snap_compare(app, terminal_size=SMALL, run_before=steady(wait_ready))


def test_loading_with_a_message_waiting(snap_compare, released: threading.Event) -> None:
    backend = ScriptedBackend(script)

    def loader(progress):
        progress("loading weights (bfloat16, cuda)")
        released.wait(30)
        return backend

    async def run_before(pilot: Pilot) -> None:
        screen = chat(pilot.app)
        await wait_for(pilot, lambda: screen.model_status.detail)
        await send(pilot, QUESTION)

    assert snap_compare(make_app(loader=loader), terminal_size=SMALL, run_before=steady(run_before))


def test_thinking_mid_reasoning(snap_compare) -> None:
    backend = PausingBackend(script=script, pause_after=12)

    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        await send(pilot, QUESTION)
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: chat(pilot.app).turn_view.indicator.tokens == 12)

    assert snap_compare(make_app(backend), terminal_size=WIDE, run_before=steady(run_before))


def test_answered_wide_with_a_transcript(snap_compare, store: Store) -> None:
    backend = ScriptedBackend(script)
    conversation = Conversation()
    ChatSession(backend, conversation, store=store).ask("What makes sunsets red?")
    app = make_app(backend, store=store, conversation=store.get(conversation.id))
    assert snap_compare(app, terminal_size=WIDE, run_before=answered())


def test_answered_at_80x24(snap_compare) -> None:
    assert snap_compare(make_app(ScriptedBackend(script)), terminal_size=SMALL, run_before=answered())


def test_reasoning_collapsed(snap_compare) -> None:
    app = make_app(ScriptedBackend(script))
    assert snap_compare(app, terminal_size=SMALL, run_before=answered(), press=["ctrl+t"])


def test_cancelled_mid_answer(snap_compare) -> None:
    backend = PausingBackend(script=script, pause_stage="answer", pause_after=3)

    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        await send(pilot, QUESTION)
        await wait_for(pilot, backend.paused.is_set)
        await pilot.press("escape")
        await wait_idle(pilot)
        pilot.app.clear_notifications()

    assert snap_compare(make_app(backend), terminal_size=SMALL, run_before=steady(run_before))


def test_meter_warning(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        chat(pilot.app).meter.usage = ContextUsage(32000, 20500, 1800, 600)

    assert snap_compare(make_app(ScriptedBackend(script)), terminal_size=SMALL, run_before=steady(run_before))


def test_overflow_dialog(snap_compare) -> None:
    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        await send(pilot, "word " * 60)

    app = make_app(ScriptedBackend(script), context_limit=50)
    assert snap_compare(app, terminal_size=SMALL, run_before=steady(run_before))


def test_error_dialog(snap_compare) -> None:
    app = make_app(ScriptedBackend(script, fail_at=("answer", 4)))
    assert snap_compare(app, terminal_size=SMALL, run_before=answered())


def test_settings_dialog(snap_compare) -> None:
    app = make_app(ScriptedBackend(script))
    assert snap_compare(app, terminal_size=SMALL, run_before=steady(wait_ready), press=["ctrl+g"])
