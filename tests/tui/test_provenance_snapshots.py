"""SVG snapshots of the Reasoning pane's title for each provenance, at 80×24: cut by its budget,
answered early, edited by the user, written by the user, and no reasoning; and the Answer-now key in
the footer while the reasoning streams (the footer is cut at 80 columns).

After an intended change of the look: ``pytest tests/tui/test_provenance_snapshots.py
--snapshot-update``, then review the SVGs in ``__snapshots__``.
"""

from __future__ import annotations

from textual.pilot import Pilot

from reasonchat.conversation import Conversation
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.settings import GenerationSettings
from reasonchat.session import ChatSession
from tests.tui.helpers import SMALL, PausingBackend, chat, make_app, send, wait_for, wait_idle, wait_ready
from tests.tui.test_snapshots import QUESTION, frozen_clocks, script, steady  # noqa: F401 (a fixture)


def saved_turn_app(steer) -> object:
    """The app opened on a conversation whose one turn ``steer`` made through the session."""
    backend = ScriptedBackend(script)
    conversation = Conversation()
    steer(ChatSession(backend, conversation))
    return make_app(backend, conversation=conversation)


def shown_whole():
    async def run_before(pilot: Pilot) -> None:
        screen = chat(pilot.app)
        turn = screen.conversation.turns[-1]
        view = screen.turn_view
        await wait_ready(pilot)
        await wait_for(
            pilot,
            lambda: view.pane("reasoning").text == (turn.reasoning or "")
            and view.pane("answer").text == turn.answer,
        )
        await pilot.pause()

    return steady(run_before)


def test_cut_by_the_budget(snap_compare) -> None:
    app = make_app(ScriptedBackend(script), settings=GenerationSettings(reasoning_tokens=12))

    async def run_before(pilot: Pilot) -> None:
        await wait_ready(pilot)
        await send(pilot, QUESTION)
        await wait_idle(pilot)
        pilot.app.clear_notifications()

    assert snap_compare(app, terminal_size=SMALL, run_before=steady(run_before))


def test_answered_early(snap_compare) -> None:
    backend = PausingBackend(script=script, pause_after=12)

    async def run_before(pilot: Pilot) -> None:
        screen = chat(pilot.app)
        await wait_ready(pilot)
        await send(pilot, QUESTION)
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: screen.reasoning_streaming)
        await pilot.press("f5")
        await wait_idle(pilot)

    assert snap_compare(make_app(backend), terminal_size=SMALL, run_before=steady(run_before))


def test_edited_by_the_user(snap_compare) -> None:
    def steer(session: ChatSession) -> None:
        session.ask(QUESTION)
        session.reanswer("Air scatters blue light the most: Rayleigh scattering.")

    assert snap_compare(saved_turn_app(steer), terminal_size=SMALL, run_before=shown_whole())


def test_written_by_the_user(snap_compare) -> None:
    def steer(session: ChatSession) -> None:
        session.ask(QUESTION, reasoning="Answer in one line; mention Rayleigh.")

    assert snap_compare(saved_turn_app(steer), terminal_size=SMALL, run_before=shown_whole())


def test_no_reasoning(snap_compare) -> None:
    def steer(session: ChatSession) -> None:
        session.ask(QUESTION, reasoning="")

    assert snap_compare(saved_turn_app(steer), terminal_size=SMALL, run_before=shown_whole())


def test_answer_now_is_in_the_footer_while_the_reasoning_streams(snap_compare) -> None:
    backend = PausingBackend(script=script, pause_after=12)

    async def run_before(pilot: Pilot) -> None:
        screen = chat(pilot.app)
        await wait_ready(pilot)
        await send(pilot, QUESTION)
        await wait_for(pilot, backend.paused.is_set)
        await wait_for(pilot, lambda: screen.reasoning_streaming and screen.turn_view.indicator.tokens == 12)

    assert snap_compare(make_app(backend), terminal_size=SMALL, run_before=steady(run_before))
