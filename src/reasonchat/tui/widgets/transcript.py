"""Earlier turns of the conversation, each with its reasoning folded.

Rendering Markdown is what costs (tens of milliseconds a turn, more with code blocks, and every
widget makes each later layout slower), so a long saved conversation must not render all of it up
front: a folded reasoning is rendered when first unfolded, only the latest ``FIRST_PAGE`` turns are
shown at first, and ``PAGE`` more come each time the user scrolls to the top (or presses Enter on the
line that counts the hidden ones). The view stays where it was when they arrive above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from reasonchat.conversation import Turn
from reasonchat.sanitize import for_screen
from reasonchat.tui.widgets.stage_pane import answer_title, reasoning_position, reasoning_title, stats_line

if TYPE_CHECKING:
    from reasonchat.tui.widgets.model_markdown import ModelMarkdown

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
        # Who wrote it and which version, as the panes said (a cut shows in the stats already).
        turn = self.turn
        title = reasoning_title(turn.reasoning_source, None, reasoning_position(turn))
        answer = answer_title(turn) if len(turn.current.answers) > 1 or turn.mark else ""
        self.update(" · ".join(filter(None, [f"{mark} {title}", stats_line(turn.reasoning_stats), answer])))

    async def action_toggle(self) -> None:
        self.unfolded = not self.unfolded
        if self._markdown is None:
            from reasonchat.tui.widgets.model_markdown import ModelMarkdown  # not at start: see there

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

    async def show_version(self) -> None:
        """The turn again, after another of its versions became the active one (its fold focused,
        so the variant keys go on acting on it)."""
        await self.remove_children()
        await self.mount_all(list(self.compose()))
        for fold in self.query(ReasoningFold):
            fold.focus()

    def compose(self):
        from reasonchat.tui.widgets.model_markdown import ModelMarkdown  # not at start: see there

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
        # A turn that must stay where it was in the view while earlier ones arrive above it, its
        # offset from the top of the view, and the scroll position that keeps it there.
        self._anchor: tuple[TranscriptTurn, float] | None = None
        self._anchored_y: float | None = None

    def compose(self):
        yield EarlierTurns()

    def on_mount(self) -> None:
        self._update()

    @property
    def hidden(self) -> int:
        """Earlier turns not rendered yet."""
        return len(self._turns) - self._shown

    async def show(self, turns: list[Turn]) -> None:
        self._anchor = self._anchored_y = None
        await self.query(TranscriptTurn).remove()
        self._turns, self._shown = list(turns), 0
        await self.show_earlier(FIRST_PAGE)
        self.scroll_end(animate=False)

    async def show_earlier(self, count: int = PAGE) -> None:
        """Another page of older turns, above those shown; the view keeps its place."""
        end = self.hidden
        older = self._turns[max(0, end - count) : end]
        if older:
            shown = self.query(TranscriptTurn)
            if shown:
                first = shown.first()
                self._anchor = (first, first.virtual_region.y - self.scroll_y)
            # Counted first: what the "earlier turns" line says holds once the turns can be seen.
            self._shown += len(older)
            self._update()
            await self.mount_all([TranscriptTurn(turn) for turn in older], after=self.query_one(EarlierTurns))
            self.call_after_refresh(self._keep_anchor)
        self._update()

    def watch_virtual_size(self) -> None:
        # The turns above grow for a few frames (their Markdown is laid out after they mount): each
        # time, the anchored turn goes back to where it was.
        if self._anchor is not None:
            self._keep_anchor()

    def _keep_anchor(self) -> None:
        if self._anchor is None:
            return
        turn, offset = self._anchor
        if not turn.is_attached:
            self._anchor = None
            return
        self._anchored_y = min(max(0.0, turn.virtual_region.y - offset), self.max_scroll_y)
        self.scroll_to(y=self._anchored_y, animate=False, immediate=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if self._anchored_y is not None and abs(new_value - self._anchored_y) >= 1:
            self._anchor = self._anchored_y = None  # the user scrolled: the view is theirs again
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
        self._anchor = self._anchored_y = None  # a new turn: the view goes to the end
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
