"""A saved conversation re-streamed through the same split panes, with its recorded timing.

No model and no engine: the screen walks each turn's ``replay.turn_events`` on a ``ReplayClock`` (one
turn at a time, so a long conversation starts at once), turned into the turn events a live run sends,
through the same ``TurnView.apply``. Events that fall due together are applied in one frame; the
panes append them in bounded steps. Earlier turns move to the lazy transcript as the replay goes on.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from reasonchat.conversation import Conversation, Stage
from reasonchat.engine.turn import StageFinished, StageStarted, TextChunk
from reasonchat.replay import (
    TURN_GAP_S,
    ReplayClock,
    ReplayEvent,
    duration,
    next_speed,
    speed_label,
    step_in,
    turn_events,
)
from reasonchat.sanitize import for_screen, sanitize
from reasonchat.tui.widgets.bindings_footer import BindingsFooter
from reasonchat.tui.widgets.transcript import Transcript
from reasonchat.tui.widgets.turn_view import TurnView

# Between two paints: events due within one frame are written together.
FRAME_S = 1 / 30
STATUS_TICK_S = 0.25
PLAYING_ACTIONS = frozenset({"pause", "next_turn", "speed", "to_end"})


def clock_text(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


class ReplayScreen(Screen[None]):
    ESCAPE_TO_MINIMIZE = False
    BINDINGS = [
        # Priority: a focused transcript line would take Space (it toggles on Enter or Space).
        Binding("space", "pause", "Pause/resume", id="replay.pause", priority=True),
        Binding("n", "next_turn", "Next turn", id="replay.next_turn"),
        Binding("s", "speed", "Speed", id="replay.speed"),
        Binding("e", "to_end", "End", id="replay.to_end"),
        Binding("ctrl+t", "toggle_reasoning", "Reasoning", id="replay.toggle_reasoning"),
        Binding("f12", "compare", "Compare", id="replay.compare", show=False),
        Binding("escape,q", "close", "Close", id="replay.close"),
    ]
    PALETTE: tuple[tuple[str, str, str], ...] = (
        ("Pause or resume the replay", "pause", "Space"),
        ("Skip to the next turn", "next_turn", "The current turn is shown whole"),
        ("Change replay speed", "speed", "1×, 2×, 4×"),
        ("Show the whole conversation", "to_end", "Jump to the end of the replay"),
        ("Close the replay", "close", "Esc"),
        ("Compare versions", "compare", "The shown turn's version beside the one before it (f12)"),
    )

    def __init__(self, conversation: Conversation, speed: float, source: str) -> None:
        super().__init__()
        self.conversation = conversation
        self.instant = speed == 0
        self.clock = ReplayClock(speed or 1.0)
        self.source = source
        self.events: list[ReplayEvent] = []  # the current turn's
        self.total_s: float | None = None  # the whole replay at speed 1, once measured
        self.finished = False
        self.shown_turn: int | None = None  # the turn in the panes
        self._next = 0  # index in ``events`` of the next one to show
        self._skip: Literal["turn", "end"] | None = None
        self._wake = asyncio.Event()
        self._streaming: Stage | None = None
        self.step: str | None = None  # where the user stepped in on the turn in the panes

    def compose(self) -> ComposeResult:
        yield Transcript(id="transcript")
        yield TurnView()
        # Where the replay is: state, turn, speed, recorded time.
        yield Static(id="replay-status", markup=False)
        yield BindingsFooter(compact=True)

    @property
    def turn_view(self) -> TurnView:
        return self.query_one(TurnView)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    def on_mount(self) -> None:
        self._update_status()
        self.set_interval(STATUS_TICK_S, self._update_status)
        # The timeline and the first Markdown come after the first frame.
        self.call_after_refresh(self._start_playing)

    def _start_playing(self) -> None:
        # A replay that fails (a widget gone while closing, a bug) must not take the app down.
        # The method, not a coroutine: a replay closed before its worker starts leaves none unawaited.
        self.run_worker(self._play, name="replay", group="replay", exclusive=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name == "replay" and event.state == WorkerState.ERROR:
            self.notify(f"The replay stopped: {sanitize(str(event.worker.error))}", severity="error", markup=False)

    # --- playing -------------------------------------------------------------------------------

    async def _play(self) -> None:
        turns = self.conversation.turns
        if self.instant or not turns:
            await self._show_all()
            return
        # The clock starts now, with the first event, not when the screen was built.
        paused, self.clock = self.clock.paused, ReplayClock(self.clock.speed)
        if paused:
            self.clock.pause()
        start = 0.0
        for index in range(len(turns)):
            self.events, self._next = turn_events(self.conversation, index, start), 0
            await self._play_turn()
            if index == 0:
                self.run_worker(self._measure_total, thread=True, group="replay-total")
            if self._skip == "end":
                await self._show_all()
                return
            start = self.events[-1].at_s + TURN_GAP_S
            if self._skip == "turn":
                self._skip = None
                self.clock.jump(start)
        self._finish()

    async def _play_turn(self) -> None:
        """The events of the current turn as they fall due; a skip shows the rest at once."""
        while self._next < len(self.events):
            if self._skip is not None:
                await self._apply(self.events[self._next :])
                self._next = len(self.events)
                return
            position = self.clock.position()
            if self.events[self._next].at_s > position:
                # Not due yet: wait (while paused, until a key). What a skip made due is shown
                # even while paused.
                await self._sleep(self.clock.seconds_until(self.events[self._next].at_s))
                continue
            end = self._next
            while end < len(self.events) and self.events[end].at_s <= position:
                end += 1
            await self._apply(self.events[self._next : end])
            self._next = end
            await asyncio.sleep(FRAME_S)

    def _measure_total(self) -> None:
        # A pass over every recorded chunk: in a thread, once the first turn is on screen.
        self.total_s = duration(self.conversation)

    async def _sleep(self, seconds: float | None) -> None:
        """Until ``seconds`` pass (forever while paused), or a key changes the plan."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _poke(self) -> None:
        self._wake.set()

    async def _apply(self, events: list[ReplayEvent]) -> None:
        """Show ``events`` at once, as the turn events a live run would have sent."""
        for event in events:
            if event.stage is None:
                await self._start_turn(event.turn_index)
                continue
            turn = self.conversation.turns[event.turn_index]
            view = self.turn_view
            if event.stage != self._streaming:
                stats = turn.stats(event.stage)
                prompt = stats.prompt_tokens if stats is not None else 0
                cached = stats.cached_tokens if stats is not None else 0
                await view.apply(StageStarted(event.turn_index, event.stage, prompt, cached, 0))
                self._streaming = event.stage
            if event.text:
                await view.apply(TextChunk(event.turn_index, event.stage, event.text, 0, event.at_s))
            if event.final:
                text = turn.text(event.stage) or ""
                await view.apply(StageFinished(event.turn_index, event.stage, text, turn.stats(event.stage)))
                self._streaming = None
            if event.step is not None:
                self._mark_step(event.step)

    def _mark_step(self, step: str) -> None:
        """Where the user stepped in: in the status line for as long as the turn shows, and said once."""
        self.step = step
        self._update_status()
        if not self.instant:
            self.notify(f"✋ Here {step}.", markup=False)

    async def _start_turn(self, index: int) -> None:
        self.step = None
        if self.shown_turn is not None:
            await self.transcript.add(self.conversation.turns[self.shown_turn])
        self.shown_turn = index
        self._streaming = None
        turn = self.conversation.turns[index]
        await self.turn_view.start(turn.user, turn)
        self._update_status()

    async def _show_all(self) -> None:
        """The whole conversation at once: earlier turns in the (lazy) transcript, the last in the panes."""
        turns = self.conversation.turns
        self._streaming = None
        if turns:
            await self.turn_view.show_turn(turns[-1])
            self.shown_turn = len(turns) - 1
            self.step = step_in(turns[-1])
            await self.transcript.show(turns[:-1])
        self._finish()

    def _finish(self) -> None:
        self.finished = True
        self._update_status()
        self.refresh_bindings()  # the playing keys leave the footer

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in PLAYING_ACTIONS:
            return not self.finished
        return True

    # --- keys ----------------------------------------------------------------------------------

    # check_action keeps the playing keys from running once the replay has finished.

    def action_pause(self) -> None:
        if self.clock.paused:
            self.clock.resume()
        else:
            self.clock.pause()
        self._update_status()
        self._poke()

    def action_next_turn(self) -> None:
        if self._skip is None:
            self._skip = "turn"
            self._poke()

    def action_to_end(self) -> None:
        self._skip = "end"
        self._poke()

    def action_speed(self) -> None:
        self.clock.set_speed(next_speed(self.clock.speed))
        self._update_status()
        self._poke()

    def action_toggle_reasoning(self) -> None:
        self.turn_view.toggle_reasoning()

    def action_compare(self) -> None:
        # Imported here: the diff is not needed for the replay's first frame.
        from reasonchat.tui.screens.compare import compare_versions

        if self.shown_turn is None:
            self.notify("No turn shown yet.")
            return
        turn = self.conversation.turns[self.shown_turn]
        screen = compare_versions(turn, f"turn {self.shown_turn + 1} · {self.conversation.title}")
        if screen is None:
            self.notify("This turn has one version.")
        else:
            if not self.clock.paused:
                self.action_pause()  # the replay waits while the user reads
            self.app.push_screen(screen)

    def action_close(self) -> None:
        self.app.close_screen(self)  # type: ignore[attr-defined]

    # --- status --------------------------------------------------------------------------------

    def _update_status(self) -> None:
        status = self.query_one("#replay-status", Static)
        total = len(self.conversation.turns)
        turn = 0 if self.shown_turn is None else self.shown_turn + 1
        if self.finished:
            state, speed = "■ replayed", ""
        else:
            state = "❚❚ paused" if self.clock.paused else "▶ replaying"
            speed = f" · {speed_label(0.0 if self.instant else self.clock.speed)}"
        where = ""
        if self.events and not self.finished:
            position = self.clock.position()
            where = f" · {clock_text(position if self.total_s is None else min(position, self.total_s))}"
            if self.total_s is not None:
                where += f" of {clock_text(self.total_s)}"
        step = f" · ✋ {self.step}" if self.step is not None else ""
        title = " ".join(for_screen(self.conversation.title).split()) or "(untitled)"
        source = " ".join(for_screen(self.source).split())  # a file's name is anybody's text too
        status.update(f"{state} · turn {turn}/{total}{speed}{where}{step} · {title} · {source}")
