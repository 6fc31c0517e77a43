"""Two variants of a turn side by side: reasoning A | reasoning B, their answers below, each pair with
its words diffed (``word_diff``): what A has that B lacks is marked removed on A's side, what B has that
A lacks is marked added on B's side. Below the breakpoint (``tui.look``) the sides stack, A above B.

The texts are shown as rich ``Text`` (not Markdown: a diff mark must cover exactly its words), made
safe with ``for_screen`` before they are diffed, so what is compared is what is shown. The diff runs in
a thread (it grows faster than the texts do): the plain texts show at once, the marks when it is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from reasonchat.conversation import SOURCE_WORDS, Turn
from reasonchat.sanitize import for_screen, sanitize
from reasonchat.tui.widgets.bindings_footer import BindingsFooter
from reasonchat.variants import Version, versions
from reasonchat.word_diff import DiffSummary, Kind, Segment, diff_with_summary

SIDES = ("a", "b")
STAGES = ("reasoning", "answer")
DIFF_WORKER = "compare-diff"
# What the diff found, per stage: A's segments, B's segments, the summary.
Diffs = dict[str, tuple[list[Segment], list[Segment], DiffSummary]]


@dataclass(frozen=True)
class CompareSide:
    """One variant of a turn, as the compare screen shows it."""

    label: str  # which variant, e.g. "reasoning 1/3 · answer 1/1"
    reasoning: str
    answer: str
    note: str = ""  # e.g. its source or mark: "edited · good"


def one_line(text: str) -> str:
    """A label or title from anybody's text: safe, on one line."""
    return " ".join(for_screen(text).split())


class CompareText(Static):
    """A text as diff segments; the marks' looks come from the component classes (the theme's)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "compare-text--removed",
        "compare-text--added",
        "compare-text--empty",
    }

    def __init__(self, segments: list[Segment], *, empty: str, id: str | None = None) -> None:
        super().__init__(id=id, classes="compare-text", markup=False)
        self.segments = segments
        self.empty = empty

    def show(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.refresh(layout=True)

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.segments)

    def render(self) -> Text:
        if not self.plain:
            return Text(self.empty, style=self.get_component_rich_style("compare-text--empty", partial=True))
        styles: dict[Kind, Style] = {
            "same": Style.null(),
            "removed": self.get_component_rich_style("compare-text--removed", partial=True),
            "added": self.get_component_rich_style("compare-text--added", partial=True),
        }
        text = Text(end="")
        for part, kind in self.segments:
            text.append(part, styles[kind])
        return text


class ComparePane(VerticalScroll):
    """One side of one stage, scrollable and focusable (Tab moves between them)."""

    def __init__(self, stage: str, side: str, text: str, *, title: str, note: str = "") -> None:
        super().__init__(id=f"compare-{stage}-{side}", classes=f"compare-pane -{stage} -{side}")
        self.stage = stage
        self.side = side
        self.text = text
        self.note = note
        self.border_title = Content(title)
        self.border_subtitle = Content(note) if note else None

    def compose(self) -> ComposeResult:
        yield CompareText([(self.text, "same")] if self.text else [], empty=f"(no {self.stage})")

    @property
    def body(self) -> CompareText:
        return self.query_one(CompareText)

    def show(self, segments: list[Segment], summary: DiffSummary) -> None:
        self.body.show(segments)
        other = "B" if self.side == "a" else "A"
        words = summary.removed if self.side == "a" else summary.added
        if not summary.changed:
            count = "the same"
        elif words:
            count = f"{words} word{'' if words == 1 else 's'} not in {other}"
        elif any(kind != "same" for _, kind in segments):
            count = f"only punctuation not in {other}"
        else:
            count = f"all of it in {other}"
        self.border_subtitle = Content(" · ".join(part for part in (self.note, count) if part))


def share_text(stage: str, summary: DiffSummary, *, words: bool = False) -> str:
    """``reasoning: 82 % of words in common`` (``answer: 82 %`` without ``words``)."""
    if not summary.changed:
        return f"{stage}: the same"
    return f"{stage}: {summary.percent} %{' of words in common' if words else ''}"


class CompareScreen(Screen[None]):
    """Two variants of a turn compared, reasoning and answer, word by word."""

    CSS_PATH = Path(__file__).with_name("compare.tcss")
    ESCAPE_TO_MINIMIZE = False
    AUTO_FOCUS = "#compare-reasoning-a"
    BINDINGS = [
        Binding("escape,q", "close", "Close", id="compare.close"),
        Binding("tab", "next_pane", "Other side", id="compare.next_pane"),
        Binding("shift+tab", "previous_pane", "Back", show=False, id="compare.previous_pane"),
    ]
    PALETTE: tuple[tuple[str, str, str], ...] = (
        ("Close the comparison", "close", "Esc"),
        ("Focus the other side", "next_pane", "Tab: reasoning A, reasoning B, answer A, answer B"),
    )

    def __init__(self, a: CompareSide, b: CompareSide, title: str = "") -> None:
        super().__init__()
        self.sides = {"a": a, "b": b}
        self.title_text = one_line(title)
        # What is diffed is what is shown: safe first.
        self.texts = {
            (stage, side): for_screen(getattr(self.sides[side], stage)) for stage in STAGES for side in SIDES
        }
        self.diffs: Diffs | None = None  # once the diff has run

    @property
    def diffed(self) -> bool:
        return self.diffs is not None

    def compose(self) -> ComposeResult:
        yield Static(self._header(), id="compare-header", markup=False)
        for stage in STAGES:
            with Horizontal(id=f"compare-{stage}s", classes="compare-row"):
                for side in SIDES:
                    variant = self.sides[side]
                    name = side.upper()
                    if stage == "reasoning":
                        label = one_line(variant.label)
                        title = f"Reasoning {name}{f' · {label}' if label else ''}"
                        note = one_line(variant.note)
                    else:
                        title, note = f"Answer {name}", ""
                    yield ComparePane(stage, side, self.texts[stage, side], title=title, note=note)
        yield BindingsFooter(compact=True)

    def on_mount(self) -> None:
        # The diff of two long texts takes a while: off the UI loop, the plain texts shown meanwhile.
        self.run_worker(self._diff, name=DIFF_WORKER, group=DIFF_WORKER, thread=True, exit_on_error=False)

    def _diff(self) -> Diffs:
        return {stage: diff_with_summary(self.texts[stage, "a"], self.texts[stage, "b"]) for stage in STAGES}

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != DIFF_WORKER:
            return
        if event.state == WorkerState.SUCCESS:
            diffs: Diffs = event.worker.result
            self._show(diffs)
        elif event.state == WorkerState.ERROR:
            error = sanitize(str(event.worker.error))
            self.notify(f"Could not compare: {error}", severity="error", markup=False)

    def _show(self, diffs: Diffs) -> None:
        for stage in STAGES:
            segments_a, segments_b, summary = diffs[stage]
            self.pane(stage, "a").show(segments_a, summary)
            self.pane(stage, "b").show(segments_b, summary)
        self.diffs = diffs
        self.query_one("#compare-header", Static).update(self._header())

    def _header(self) -> str:
        """The shares first, the title last: on a narrow screen the title is what is cut."""
        if self.diffs is None:
            parts = ["comparing…"]
        else:
            reasoning, answer = (self.diffs[stage][2] for stage in STAGES)
            parts = [share_text("reasoning", reasoning, words=True), share_text("answer", answer)]
        if self.title_text:
            parts.append(self.title_text)
        return " · ".join(parts)

    def pane(self, stage: str, side: str) -> ComparePane:
        return self.query_one(f"#compare-{stage}-{side}", ComparePane)

    @property
    def panes(self) -> list[ComparePane]:
        """In Tab's order: reasoning A, reasoning B, answer A, answer B."""
        return [self.pane(stage, side) for stage in STAGES for side in SIDES]

    # --- keys ----------------------------------------------------------------------------------

    def _move_focus(self, step: int) -> None:
        panes = self.panes
        focused = self.focused
        within = [] if focused is None else [focused, *focused.ancestors]
        index = next((i for i, pane in enumerate(panes) if pane in within), None)
        if index is None:  # nothing of ours focused: start at the first (or, backwards, the last)
            panes[0 if step > 0 else -1].focus()
        else:
            panes[(index + step) % len(panes)].focus()

    def action_next_pane(self) -> None:
        self._move_focus(1)

    def action_previous_pane(self) -> None:
        self._move_focus(-1)

    def action_close(self) -> None:
        self.app.close_screen(self)  # type: ignore[attr-defined]


def compare_versions(turn: Turn, title: str) -> CompareScreen | None:
    """The screen for ``turn``'s active version beside the one listed before it (the next one, for
    the first), or None when the turn has one version."""
    listed = versions(turn)
    if len(listed) < 2:
        return None
    current = next(i for i, version in enumerate(listed) if version.active)
    other = current - 1 if current > 0 else 1
    return CompareScreen(_side(turn, listed[other]), _side(turn, listed[current]), title)


def _side(turn: Turn, version: Version) -> CompareSide:
    variant = turn.variants[version.reasoning]
    label = (
        f"reasoning {version.reasoning + 1}/{len(turn.variants)} · "
        f"answer {version.answer + 1}/{len(variant.answers)}" + (" (active)" if version.active else "")
    )
    note = " · ".join(filter(None, [SOURCE_WORDS[version.source], version.mark and f"marked {version.mark}"]))
    return CompareSide(label, version.reasoning_text or "", version.answer_text or "", note)
