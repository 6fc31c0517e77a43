"""One stage of the current turn (Reasoning or Answer): a titled Markdown view that streams."""

from __future__ import annotations

import asyncio

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownStream

from reasonchat.conversation import Stage, StageStats

_STOPS = {
    "cancelled": "cancelled",
    "max_new_tokens": "stopped at the token limit",
    "error": "failed",
}


def stats_line(stats: StageStats | None) -> str:
    """The pane's subtitle: tokens, and how the stage ended when that was not a clean stop."""
    if stats is None:
        return ""
    parts = [f"{stats.new_tokens:,} tokens"]
    if stats.stop_reason in _STOPS:
        parts.append(_STOPS[stats.stop_reason])
    return " · ".join(parts)


class StagePane(Vertical):
    """Streams with ``Markdown.get_stream`` while the stage runs, then renders the whole text once when
    it ends. Once the text outgrows the pane it is anchored to the bottom, so new text stays in view
    until the user scrolls up (Textual releases the anchor then, and restores it at the bottom)."""

    ALLOW_MAXIMIZE = True

    def __init__(self, stage: Stage, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="stage-pane")
        self.stage = stage
        self.border_title = title
        self._stream: MarkdownStream | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="stage-scroll"):
            # Links are never opened by the app: model text must not launch anything.
            yield Markdown(open_links=False)

    @property
    def markdown(self) -> Markdown:
        return self.query_one(Markdown)

    @property
    def scroll(self) -> VerticalScroll:
        return self.query_one(VerticalScroll)

    @property
    def text(self) -> str:
        return self.markdown.source

    async def begin(self) -> None:
        await self.clear()
        self.border_subtitle = "…"
        self._stream = Markdown.get_stream(self.markdown)

    async def write(self, text: str) -> None:
        if self._stream is None:
            return
        await self._stream.write(text)
        # Anchoring a short text would push it to the bottom of an empty pane: wait until it scrolls.
        if not self.scroll.is_anchored and self.scroll.max_scroll_y > 0:
            self.scroll.anchor()

    async def finish(self, text: str, stats: StageStats | None) -> None:
        """The final full update: streamed appends re-parse only the tail, so the last word is a clean
        parse of the whole text (already sanitized by the worker)."""
        await self._stop_stream()
        await self.markdown.update(text)
        self.border_subtitle = stats_line(stats)

    async def show(self, text: str, stats: StageStats | None) -> None:
        """A stage that is not streaming (a saved turn): shown from the top."""
        await self.clear()
        await self.markdown.update(text)
        self.border_subtitle = stats_line(stats)

    async def clear(self) -> None:
        await self._stop_stream()
        self.scroll.anchor(False)
        self.scroll.scroll_home(animate=False)
        await self.markdown.update("")
        self.border_subtitle = ""

    async def _stop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            # MarkdownStream.stop() cancels its task and awaits it; a task cancelled before its first
            # step re-raises CancelledError into us (a stage with no text): let it start first.
            await asyncio.sleep(0)
            await stream.stop()
