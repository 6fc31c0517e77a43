"""Earlier turns of the conversation, each with its reasoning folded.

Rendering Markdown is what costs (tens of milliseconds a turn, more with code blocks, and every
widget makes each later layout slower), so a long saved conversation must not render all of it up
front: a folded reasoning is rendered when first unfolded, only the latest ``FIRST_PAGE`` turns are
shown at first, and ``PAGE`` more come each time the user scrolls to the top (or presses Enter on the
line that counts the hidden ones). The view stays where it was when they arrive above it.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from reasonchat.conversation import Turn
from reasonchat.sanitize import for_screen
from reasonchat.tui.widgets.model_markdown import ModelMarkdown
from reasonchat.tui.widgets.stage_pane import reasoning_title, stats_line

FIRST_PAGE = 3  # enough to fill the transcript's share of a tall terminal
PAGE = 10


class ReasoningFold(Static, can_focus=True):
    """One line standing for a saved reasoning; Enter unfolds it below (and folds it again)."""

    BINDINGS = [Binding("enter,space", "toggle", "Show reasoning", id="transcript.toggle_reasoning")]

    def __init__(self, turn: Turn) -> None:
        super().__init__(classes="reasoning-fold", markup=False)
        self.turn = turn
        self.unfolded = False
        self._markdown: ModelMarkdown | None = None
        self._show_label()

    def _show_label(self) -> None:
        mark = "▼" if self.unfolded else "▶"
        # Who wrote it, as the pane said (a cut shows in the stats already).
        title = reasoning_title(self.turn.reasoning_source, None)
        self.update(" · ".join(filter(None, [f"{mark} {title}", stats_line(self.turn.reasoning_stats)])))

    async def action_toggle(self) -> None:
        self.unfolded = not self.unfolded
        if self._markdown is None:
            self._markdown = ModelMarkdown(for_screen(self.turn.reasoning or ""), classes="transcript-reasoning")
            await self.parent.mount(self._markdown, after=self)
        self._markdown.display = self.unfolded
        self._show_label()

    async def on_click(self) -> None:
        await self.action_toggle()


class TranscriptTurn(Vertical):
    def __init__(self, turn: Turn) -> None:
        super().__init__(classes="transcript-turn")
        self.turn = turn

    def compose(self):
        turn = self.turn
        yield Static(f"› {for_screen(turn.user)}", markup=False, classes="user-message")
        if turn.reasoning is not None:
            yield ReasoningFold(turn)
        if turn.answer is not None:
            yield ModelMarkdown(for_screen(turn.answer), classes="transcript-answer")


class EarlierTurns(Static, can_focus=True):
    """The line above the oldest shown turn: how many are hidden; Enter shows another page."""

    BINDINGS = [Binding("enter,space", "show_more", "Show earlier turns", id="transcript.show_earlier")]

    def __init__(self) -> None:
        super().__init__(id="earlier-turns", markup=False)

    async def action_show_more(self) -> None:
        transcript = self.parent
        assert isinstance(transcript, Transcript)
        await transcript.show_earlier()

    async def on_click(self) -> None:
        await self.action_show_more()


class Transcript(VerticalScroll):
    """Hidden while there is no earlier turn, so a new conversation gives all the room to the panes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._turns: list[Turn] = []
        self._shown = 0
        self._loading_earlier = False

    def compose(self):
        yield EarlierTurns()

    def on_mount(self) -> None:
        self._update()

    @property
    def hidden(self) -> int:
        """Earlier turns not rendered yet."""
        return len(self._turns) - self._shown

    async def show(self, turns: list[Turn]) -> None:
        await self.query(TranscriptTurn).remove()
        self._turns, self._shown = list(turns), 0
        await self.show_earlier(FIRST_PAGE)
        self.scroll_end(animate=False)

    async def show_earlier(self, count: int = PAGE) -> None:
        """Another page of older turns, above those shown; the view keeps its place."""
        end = self.hidden
        older = self._turns[max(0, end - count) : end]
        if older:
            height, y = self.virtual_size.height, self.scroll_y
            await self.mount_all([TranscriptTurn(turn) for turn in older], after=self.query_one(EarlierTurns))
            self._shown += len(older)
            self.call_after_refresh(lambda: self.scroll_to(y=y + self.virtual_size.height - height, animate=False))
        self._update()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Focusing the "earlier turns" line scrolls it into view too: there, Enter decides.
        focused_line = self.query_one(EarlierTurns).has_focus
        if new_value == 0 and old_value > 0 and self.hidden and not self._loading_earlier and not focused_line:
            self._loading_earlier = True
            self.run_worker(self._load_earlier(), group="transcript-earlier")

    async def _load_earlier(self) -> None:
        try:
            await self.show_earlier()
        finally:
            self._loading_earlier = False

    async def add(self, turn: Turn) -> None:
        self._turns.append(turn)
        self._shown += 1
        await self.mount(TranscriptTurn(turn))
        self._update()
        self.scroll_end(animate=False)

    async def remove_last(self) -> None:
        shown = self.query(TranscriptTurn)
        if shown:
            await shown.last().remove()
            self._turns.pop()
            self._shown -= 1
        self._update()

    def _update(self) -> None:
        hidden = self.hidden
        earlier = self.query_one(EarlierTurns)
        earlier.display = hidden > 0
        earlier.update(f"▲ {hidden} earlier turn(s) not shown · scroll up or Enter shows {min(hidden, PAGE)} more")
        self.display = bool(self._turns)
