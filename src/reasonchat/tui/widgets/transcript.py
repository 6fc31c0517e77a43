"""Earlier turns of the conversation, each with its reasoning collapsed."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Collapsible, Markdown, Static

from reasonchat.conversation import Turn
from reasonchat.sanitize import sanitize
from reasonchat.tui.widgets.stage_pane import stats_line


class TranscriptTurn(Vertical):
    def __init__(self, turn: Turn) -> None:
        super().__init__(classes="transcript-turn")
        self.turn = turn

    def compose(self) -> ComposeResult:
        turn = self.turn
        yield Static(f"› {sanitize(turn.user)}", markup=False, classes="user-message")
        if turn.reasoning is not None:
            title = " · ".join(filter(None, ["Reasoning", stats_line(turn.reasoning_stats)]))
            with Collapsible(title=title, collapsed=True, classes="transcript-reasoning"):
                yield Markdown(sanitize(turn.reasoning), open_links=False)
        if turn.answer is not None:
            yield Markdown(sanitize(turn.answer), open_links=False, classes="transcript-answer")


class Transcript(VerticalScroll):
    """Hidden while there is no earlier turn, so a new conversation gives all the room to the panes."""

    def on_mount(self) -> None:
        self._update_visibility()

    async def show(self, turns: list[Turn]) -> None:
        await self.remove_children()
        await self.mount_all([TranscriptTurn(turn) for turn in turns])
        self._update_visibility()
        self.scroll_end(animate=False)

    async def add(self, turn: Turn) -> None:
        await self.mount(TranscriptTurn(turn))
        self._update_visibility()
        self.scroll_end(animate=False)

    async def remove_last(self) -> None:
        turns = self.query(TranscriptTurn)
        if turns:
            await turns.last().remove()
        self._update_visibility()

    def _update_visibility(self) -> None:
        self.display = bool(self.query(TranscriptTurn))
