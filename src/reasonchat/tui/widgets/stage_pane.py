"""One stage of the current turn (Reasoning or Answer): a titled Markdown view that streams.

A GPU server streams thousands of tokens a second; the pane must never be what the user waits for:

- Text is appended with ``Markdown.append`` (which re-parses only the last block) by the pane's own
  feed task, at most ``MAX_APPEND_LINES`` lines a step and one step a frame. ``MarkdownStream`` would join everything
  pending into one append, so a burst would mount hundreds of blocks before a key got its turn.
- Blocks well above the view are hidden behind one spacer of their height: Textual lays out every
  displayed widget at every layout, so a long stage would otherwise get slower with every block.
  Scrolling up shows them again before they come into view.
- When the stage ends, the streamed blocks are compared with a parse of the whole text; only when
  they differ is the text rendered again in full (a full render rebuilds every block: seconds on a
  long stage).
- Whether to follow the bottom is decided after the screen has laid the new text out: a size read
  right after an append belongs to the previous layout.
- The Markdown itself is mounted after the first frame (or when text must be shown before it), so
  that neither markdown-it nor Textual's Markdown is imported before a first frame.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll

from reasonchat.conversation import Stage, StageStats, Turn
from reasonchat.sanitize import ScreenStream, for_screen
from reasonchat.tui import gc_policy

if TYPE_CHECKING:
    from textual.widgets.markdown import MarkdownBlock

    from reasonchat.tui.widgets.model_markdown import StageMarkdown

# Lines per append: about twenty blocks of ordinary Markdown, a frame's worth of mounting. Lines, not
# characters: new blocks start only at line ends, so a long line (one growing paragraph, which
# Markdown.append re-renders whole each time) goes in one append instead of many.
MAX_APPEND_LINES = 48
# Pane heights of blocks kept displayed above the view; what lies further up is hidden.
KEEP_ABOVE = 1
# Settles a block must have been laid out for before it may be hidden.
SETTLED_AFTER = 2

_STOPS = {
    "cancelled": "cancelled",
    "max_new_tokens": "stopped at the token limit",
    "budget": "stopped at the token limit",
    "answer_now": "answered early",
    "error": "failed",
}
# Stop reasons of a reasoning cut by its token budget (``max_new_tokens``: saved before budgets per stage).
_BUDGET_STOPS = ("budget", "max_new_tokens")


def reasoning_title(source: str | None, stats: StageStats | None, position: str = "") -> str:
    """The Reasoning pane's title: where the reasoning came from, and whether it was cut short, so a
    reader knows how far to trust the answer that follows it; ``position`` ("2/3"): which variant."""
    name = f"Reasoning {position}" if position else "Reasoning"
    if source == "none":
        return f"No reasoning · {position}" if position else "No reasoning"
    if source == "user":
        return f"{name} · written by you"
    if source == "edited":
        return f"{name} · edited by you"
    if stats is not None and stats.stop_reason in _BUDGET_STOPS:
        return f"{name} · cut at {stats.new_tokens:,} tokens (budget)"
    if stats is not None and stats.stop_reason == "answer_now":
        return f"{name} · answered early"
    return name


MARK_WORDS = {"good": "✓ marked good", "bad": "✗ marked bad"}


def answer_title(turn: Turn | None) -> str:
    """"Answer", with which of the reasoning's answers it is ("Answer 2/3") and its mark, if any."""
    if turn is None:
        return "Answer"
    count = len(turn.current.answers)
    parts = [f"Answer {turn.current.active_answer + 1}/{count}" if count > 1 else "Answer"]
    if turn.mark is not None:
        parts.append(MARK_WORDS[turn.mark])
    return " · ".join(parts)


def reasoning_position(turn: Turn | None) -> str:
    """"2/3" for the second of three reasoning variants; "" for a turn with one."""
    if turn is None or len(turn.variants) < 2:
        return ""
    return f"{turn.active + 1}/{len(turn.variants)}"


def stats_line(stats: StageStats | None) -> str:
    """The pane's subtitle: tokens, and how the stage ended when that was not a clean stop."""
    if stats is None:
        return ""
    parts = [f"{stats.new_tokens:,} tokens"]
    if stats.stop_reason in _STOPS:
        parts.append(_STOPS[stats.stop_reason])
    return " · ".join(parts)


def split_for_append(text: str, limit: int = MAX_APPEND_LINES) -> tuple[str, str]:
    """At most ``limit`` lines now (cut after a line end); the rest later."""
    cut = -1
    for _ in range(limit):
        cut = text.find("\n", cut + 1)
        if cut < 0:
            return text, ""
    return text[: cut + 1], text[cut + 1 :]


class _Feed:
    """Appends what the pane is given, in order, in a task of its own (never more than one append at
    a time, and never one of more than ``MAX_APPEND_LINES`` lines)."""

    def __init__(self, pane: StagePane) -> None:
        self._pane = pane
        self._pending: list[str] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run())

    def write(self, text: str) -> None:
        self._pending.append(text)
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                head, rest = split_for_append("".join(self._pending))
                self._pending[:] = [rest] if rest else []
                # Shielded: a cancel (the pane cleared) must not leave Markdown.append half done.
                await asyncio.shield(self._pane.markdown.append(head))
                # One append a frame: the screen lays out and paints (and keys are handled) between
                # two appends, and what arrives meanwhile goes into the next one.
                await self._pane.settle()
            self._idle.set()


class StagePane(Vertical):
    """Streams while the stage runs; once the text outgrows the pane it is anchored to the bottom,
    so new text stays in view until the user scrolls up (Textual releases the anchor then, and
    restores it at the bottom)."""

    ALLOW_MAXIMIZE = True

    def __init__(self, stage: Stage, title: str, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="stage-pane")
        self.stage = stage
        self.border_title = title
        self._feed: _Feed | None = None
        self._screen_text = ScreenStream()
        self._follow = False  # streaming: anchor once the text overflows
        # Hidden blocks, oldest first, each with the spacer height that shows it again.
        self._hidden: list[tuple[MarkdownBlock, int]] = []
        self._hidden_at_width = 0
        self._spacer_height = 0
        self._trimmed: MarkdownBlock | None = None  # the last block, shown without its bottom margin
        self._settles = 0
        self._first_seen: dict[MarkdownBlock, int] = {}  # the settle at which each shown block was first laid out
        self._settle_scheduled = False
        self._settled = asyncio.Event()
        self._settled.set()
        self._markdown: StageMarkdown | None = None
        self._markdown_mounted = asyncio.Event()

    def compose(self) -> ComposeResult:
        yield VerticalScroll(classes="stage-scroll")

    def on_mount(self) -> None:
        self.watch(self.scroll, "scroll_y", self._scrolled, init=False)
        # The Markdown comes after the first frame, which shows the panes empty either way: importing
        # and mounting it first held a replay's (and the app's) first frame up by ~35 ms.
        self.call_after_refresh(self._mount_markdown)

    async def _mount_markdown(self) -> None:
        if self._markdown is not None:  # already asked for (``_ready``)
            return
        from reasonchat.tui.widgets.model_markdown import StageMarkdown

        self._markdown = StageMarkdown()
        await self.scroll.mount(self._markdown)
        self._markdown_mounted.set()

    async def _ready(self) -> None:
        """Everything that shows text waits here first. Text to show before the first frame (a
        screen's own mount) mounts the Markdown at once: waiting for the frame would wait forever."""
        if self._markdown is None:
            await self._mount_markdown()
        await self._markdown_mounted.wait()

    @property
    def markdown(self) -> StageMarkdown:
        assert self._markdown is not None, "the pane's Markdown is mounted after the first frame"
        return self._markdown

    @property
    def scroll(self) -> VerticalScroll:
        return self.query_one(VerticalScroll)

    @property
    def text(self) -> str:
        return self._markdown.source if self._markdown is not None else ""

    @property
    def streaming(self) -> bool:
        return self._feed is not None

    @property
    def hidden_blocks(self) -> int:
        """Blocks hidden behind the spacer (far above the view)."""
        return len(self._hidden)

    # --- the stage's life ----------------------------------------------------------------------

    async def begin(self, prefix: str = "") -> None:
        """A stage starts; ``prefix``: the text it goes on from (think more), shown before what streams."""
        await self.clear()
        self.border_subtitle = "…"
        self._follow = True
        self._feed = _Feed(self)
        gc_policy.hold(self)
        if prefix:
            self.write(prefix)

    def write(self, text: str) -> None:
        """Model text as it streams (made safe and visible here, across chunk boundaries)."""
        if self._feed is not None:
            safe = self._screen_text.feed(text)
            if safe:
                self._feed.write(safe)

    async def finish(self, text: str, stats: StageStats | None) -> None:
        """The stage's whole text (as the model gave it): what the pane shows from now on equals a
        full render of it."""
        final = for_screen(text)
        await self._ready()
        if self._feed is not None:
            rest = self._screen_text.flush()
            if rest:
                self._feed.write(rest)
            await self._feed.drain()
            await self._close_feed()
        if self.markdown.source != final or not await self._streamed_matches(final):
            await self._render_whole(final)
        self.border_subtitle = stats_line(stats)
        await self.settle()
        gc_policy.release(self)

    async def show(self, text: str, stats: StageStats | None) -> None:
        """A stage that is not streaming (a saved turn): shown from the top."""
        await self.clear()
        await self.markdown.update(for_screen(text))
        self.border_subtitle = stats_line(stats)

    async def clear(self) -> None:
        await self._ready()
        await self._close_feed()
        gc_policy.release(self)
        self._follow = False
        self._screen_text = ScreenStream()
        self.scroll.anchor(False)
        self.scroll.scroll_home(animate=False)
        await self._render_whole("")
        self.border_subtitle = ""

    async def _close_feed(self) -> None:
        if self._feed is not None:
            feed, self._feed = self._feed, None
            await feed.close()

    def on_unmount(self) -> None:
        gc_policy.release(self)

    async def _render_whole(self, text: str) -> None:
        self._reveal(len(self._hidden))
        self._first_seen.clear()
        await self.markdown.update(text)

    async def _streamed_matches(self, text: str) -> bool:
        """Do the streamed blocks equal what a full parse of ``text`` gives? Their types and source
        lines must match; a reference-style link (resolved across the whole document) always
        re-renders. Parsed in a thread, as ``Markdown.update`` does."""
        from reasonchat.line_breaks import markdown_parser

        env: dict[str, object] = {}
        tokens = await asyncio.get_running_loop().run_in_executor(None, markdown_parser().parse, text, env)
        if env.get("references"):
            return False
        block_types = self.markdown.BLOCKS
        expected = []
        for token in tokens:
            if token.level == 0 and token.map is not None and token.nesting >= 0:
                # As Markdown._parse_markdown picks them: headings by tag; tokens it does not
                # render (raw HTML) have no block, streamed or not.
                block_type = block_types.get(token.tag if token.type == "heading_open" else token.type)
                if block_type is not None:
                    expected.append((block_type, tuple(token.map)))
        shown = [(type(block), tuple(block.source_range)) for block in self.markdown.blocks()]
        return shown == expected

    # --- following the bottom, hiding what is far above -------------------------------------------

    def schedule_settle(self) -> None:
        """After the screen's next layout: anchor if the text now overflows, hide far blocks."""
        if not self._settle_scheduled:
            self._settle_scheduled = True
            self._settled.clear()
            self.call_after_refresh(self._settle)

    async def settle(self) -> None:
        """Wait until the layout of everything written so far has been acted on."""
        self.schedule_settle()
        await self._settled.wait()

    def _settle(self) -> None:
        self._settle_scheduled = False
        self._trim_last_margin()
        scroll = self.scroll
        if self._follow and not scroll.is_anchored and scroll.max_scroll_y > 0:
            # Anchoring a short text would push it to the bottom of an empty pane: only once it scrolls.
            scroll.anchor()
        self._hide_far_blocks()
        self._settled.set()

    def _trim_last_margin(self) -> None:
        """No blank row under the last block, so a text that fits the pane does not scroll by one row.
        (A ``:last-child`` rule would restyle every block at every mount.)"""
        blocks = self.markdown.blocks()
        last = blocks[-1] if blocks else None
        if last is self._trimmed:
            return
        if self._trimmed is not None and self._trimmed.is_attached:
            self._trimmed.styles.clear_rule("margin")
        self._trimmed = last
        if last is not None:
            top, right, _, left = last.styles.margin
            last.styles.margin = (top, right, 0, left)

    def on_resize(self) -> None:
        # Hidden blocks' heights belong to the old width: show them all, hide again once laid out.
        if self._hidden and self.markdown.size.width != self._hidden_at_width:
            self._reveal(len(self._hidden))
            self.schedule_settle()

    def _hide_far_blocks(self) -> None:
        markdown, scroll = self.markdown, self.scroll
        if markdown.size.width != self._hidden_at_width:
            if self._hidden:
                self._reveal(len(self._hidden))
                return  # measured again after the next layout
            self._hidden_at_width = markdown.size.width
        threshold = scroll.scroll_y - KEEP_ABOVE * scroll.size.height
        if threshold <= 0:
            return
        placements = {placement.widget: placement for placement in markdown.arrange(markdown.size).placements}
        shown = [block for block in markdown.blocks() if block.display]
        self._settles += 1
        for block in shown:
            self._first_seen.setdefault(block, self._settles)
        hide: list[tuple[MarkdownBlock, int]] = []
        # Never the last block: Markdown.append updates it in place. Nor one laid out for less than
        # SETTLED_AFTER settles: a table, say, takes its final height a frame after it is mounted,
        # and a hidden block's height is the one it had when it was hidden.
        for block, following in zip(shown, shown[1:]):
            here, after = placements.get(block), placements.get(following)
            if here is None or after is None or after.region.y >= threshold:
                break
            if self._settles - self._first_seen[block] < SETTLED_AFTER:
                break
            hide.append((block, here.region.y - here.margin.top))
        if not hide:
            return
        kept = placements[shown[len(hide)]]
        with self.app.batch_update():
            for block, _ in hide:
                block.display = False
                del self._first_seen[block]
            self._hidden.extend(hide)
            # The spacer and the first kept block's top margin put it exactly where it was.
            self._set_spacer(kept.region.y - kept.margin.top)

    def _scrolled(self, old: float, new: float) -> None:
        if not self._hidden or new >= old:
            return
        # Reveal until the spacer ends a pane height above the view.
        top = max(new - self.scroll.size.height, 0)
        spacer_height, count = self._spacer_height, 0
        for _, reveal_at in reversed(self._hidden):
            if spacer_height <= top:
                break
            count += 1
            spacer_height = reveal_at
        self._reveal(count)

    def _reveal(self, count: int) -> None:
        """Show the ``count`` most recently hidden blocks again (they sit right above the view)."""
        if count <= 0:
            return
        shown, self._hidden = self._hidden[-count:], self._hidden[:-count]
        with self.app.batch_update():
            for block, _ in shown:
                block.display = True
            self._set_spacer(shown[0][1])

    def _set_spacer(self, height: int) -> None:
        self._spacer_height = height
        self.markdown.spacer.styles.height = height
