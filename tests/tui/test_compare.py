"""The compare screen: two variants of a turn, reasoning A | reasoning B above answer A | answer B, each
pair's words diffed; stacked below the breakpoint; nothing from the texts reaches the terminal raw.

After an intended change of the look: ``pytest tests/tui/test_compare.py --snapshot-update``, then
review the SVGs in ``__snapshots__/test_compare``.
"""

from __future__ import annotations

import threading

import pytest
from rich.style import Style
from textual.pilot import Pilot

from reasonchat.sanitize import for_screen
from reasonchat.tui.base_app import BaseApp
from reasonchat.tui.screens import compare
from reasonchat.tui.screens.compare import CompareScreen, CompareSide, CompareText
from reasonchat.word_diff import word_diff
from tests.tui.helpers import SMALL, screen_lines, wait_for

WIDE = (120, 36)
TITLE = "Why is the sky blue?"
A = CompareSide(
    label="reasoning 1/2 · answer 1/1",
    reasoning=(
        "Sunlight holds every colour.\n\n"
        "Air molecules scatter short wavelengths more, so blue light is scattered about five times more "
        "than red."
    ),
    answer="Because air scatters **blue** light more than red.",
    note="generated",
)
B = CompareSide(
    label="reasoning 2/2 · answer 1/1",
    reasoning=(
        "Sunlight holds all colours.\n\n"
        "Air molecules scatter short wavelengths much more, so blue is scattered more than red. Violet is "
        "absorbed higher up."
    ),
    answer="Because air scatters blue light much more than red.",
    note="edited · good",
)
HOSTILE = CompareSide(
    label="\x1b]52;c;aGk=\x07reasoning [b]2[/b]/2",
    reasoning="Think \x1b[2Jhard \x1b]8;;http://x\x07link\x1b]8;;\x07 about ad\u200bmin \x9b31mdone",
    answer="Answer \x1b[5mblink\x1b[0m.\x07",
    note="\x1b[31mred\x1b[0m note",
)


class CompareApp(BaseApp):
    """The app's base (its stylesheet, breakpoints, theme and palette), the compare screen on top of
    its default screen."""

    def __init__(self, a: CompareSide = A, b: CompareSide = B, title: str = TITLE) -> None:
        super().__init__()
        self.sides = (a, b)
        self.title_text = title
        self.closed = 0

    def on_mount(self) -> None:
        super().on_mount()
        self.push_screen(CompareScreen(*self.sides, title=self.title_text), callback=self.count_close)

    def count_close(self, result: None) -> None:
        self.closed += 1


def compare_screen(app: BaseApp) -> CompareScreen:
    screen = app.screen
    assert isinstance(screen, CompareScreen), screen
    return screen


async def diffed(pilot: Pilot) -> CompareScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.screen.diffed)
    await pilot.pause()
    return compare_screen(pilot.app)



def header(screen: CompareScreen) -> str:
    return str(screen.query_one("#compare-header").render())


def raw(text: str) -> bool:
    return any(c in "\x1b\x07" or "\x80" <= c <= "\x9f" or c == "\u200b" for c in text)


# --- what is shown -------------------------------------------------------------------------------


async def test_each_pane_shows_its_side_of_the_word_diff() -> None:
    app = CompareApp()
    async with app.run_test(size=WIDE) as pilot:
        screen = await diffed(pilot)
        for stage in ("reasoning", "answer"):
            expected_a, expected_b = word_diff(getattr(A, stage), getattr(B, stage))
            assert screen.pane(stage, "a").body.segments == expected_a
            assert screen.pane(stage, "b").body.segments == expected_b
        removed = [text for text, kind in screen.pane("reasoning", "a").body.segments if kind == "removed"]
        added = [text for text, kind in screen.pane("reasoning", "b").body.segments if kind == "added"]
        assert removed == ["every colour", "light", "about five times"]
        assert added == ["all colours", "much", ". Violet is absorbed higher up"]
        assert [t for t, k in screen.pane("answer", "a").body.segments if k == "removed"] == ["**", "**"]
        assert [t for t, k in screen.pane("answer", "b").body.segments if k == "added"] == ["much"]


async def test_the_marks_are_styled_by_the_component_classes_exactly_over_their_words() -> None:
    app = CompareApp()
    async with app.run_test(size=WIDE) as pilot:
        screen = await diffed(pilot)
        for stage, side, kind in (("reasoning", "a", "removed"), ("answer", "b", "added")):
            body = screen.pane(stage, side).body
            text = body.render()
            assert text.plain == body.plain == for_screen(getattr(A if side == "a" else B, stage))
            style = body.get_component_rich_style(f"compare-text--{kind}", partial=True)
            assert style != Style.null() and style.bgcolor is not None
            marked = [text.plain[span.start : span.end] for span in text.spans if span.style == style]
            assert marked == [part for part, k in body.segments if k == kind]
            assert all(span.style == style for span in text.spans)  # nothing else is styled


async def test_the_header_says_how_much_is_shared() -> None:
    app = CompareApp()
    async with app.run_test(size=WIDE) as pilot:
        screen = await diffed(pilot)
        assert header(screen) == f"reasoning: 68 % of words in common · answer: 94 % · {TITLE}"
        assert "generated · 6 words not in B" in str(screen.pane("reasoning", "a").border_subtitle)
        assert "edited · good · 8 words not in A" in str(screen.pane("reasoning", "b").border_subtitle)
        assert str(screen.pane("answer", "a").border_subtitle) == "only punctuation not in B"
        assert str(screen.pane("answer", "b").border_subtitle) == "1 word not in A"
        lines = screen_lines(pilot)
        assert any("Reasoning A · reasoning 1/2 · answer 1/1" in line for line in lines)
        assert any("Answer B" in line for line in lines)


async def test_identical_variants_say_so_and_an_empty_stage_is_named() -> None:
    same = CompareSide("reasoning 1/1 · answer 2/2", "", "Blue.")
    app = CompareApp(same, CompareSide("reasoning 1/1 · answer 1/2", "", "Blue."))
    async with app.run_test(size=WIDE) as pilot:
        screen = await diffed(pilot)
        assert header(screen).startswith("reasoning: the same · answer: the same")
        assert str(screen.pane("reasoning", "a").body.render()) == "(no reasoning)"
        assert screen.pane("answer", "b").body.segments == [("Blue.", "same")]


async def test_the_plain_texts_show_while_the_diff_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    real = compare.diff_with_summary

    def held(a: str, b: str):  # type: ignore[no-untyped-def]
        release.wait(10)
        return real(a, b)

    monkeypatch.setattr(compare, "diff_with_summary", held)
    app = CompareApp()
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            await pilot.pause()
            screen = compare_screen(app)
            assert not screen.diffed and header(screen) == f"comparing… · {TITLE}"
            assert screen.pane("reasoning", "a").body.segments == [(A.reasoning, "same")]
            release.set()
            await diffed(pilot)
            assert header(screen).startswith("reasoning: 68 %")
    finally:
        release.set()


async def test_closing_while_the_diff_runs_is_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    finished = threading.Event()
    real = compare.diff_with_summary

    def held(a: str, b: str):  # type: ignore[no-untyped-def]
        release.wait(10)
        try:
            return real(a, b)
        finally:
            finished.set()

    monkeypatch.setattr(compare, "diff_with_summary", held)
    app = CompareApp()
    try:
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.closed == 1)
            release.set()
            await wait_for(pilot, finished.is_set)
            await pilot.pause()
            assert not isinstance(app.screen, CompareScreen)
            assert app.return_code is None and not app._exception
    finally:
        release.set()


# --- safety --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [SMALL, WIDE])
async def test_no_control_byte_reaches_the_screen(size: tuple[int, int]) -> None:
    app = CompareApp(A, HOSTILE, title="\x1b[2J\x1b]0;pwned\x07Title")
    async with app.run_test(size=size) as pilot:
        screen = await diffed(pilot)
        texts = [body.plain for body in screen.query(CompareText)]
        texts += [str(pane.border_title) + str(pane.border_subtitle) for pane in screen.panes]
        texts.append(header(screen))
        lines = screen_lines(pilot)
        assert not any(raw(text) for text in texts + lines)
        body = screen.pane("reasoning", "b").body.plain
        assert body == "Think hard link about ad<U+200B>min done"
        assert [t for t, k in screen.pane("reasoning", "b").body.segments if k == "added"] == [
            "Think hard link",
            "ad<U+200B>min done",
        ]
        assert screen.pane("answer", "b").body.plain == "Answer blink."
        # Markup in a label is text, not style.
        assert any("Reasoning B · reasoning [b]2[/b]/2" in line for line in lines)
        assert any("red note" in line for line in lines) or size == SMALL  # narrow panes have no subtitle row
        assert header(screen).endswith(" · Title")


# --- keys and layout -----------------------------------------------------------------------------


async def test_escape_and_q_close_the_screen() -> None:
    for key in ("escape", "q"):
        app = CompareApp()
        async with app.run_test(size=SMALL) as pilot:
            await diffed(pilot)
            await pilot.press(key)
            await wait_for(pilot, lambda: app.closed == 1)
            assert not isinstance(app.screen, CompareScreen)


async def test_tab_moves_focus_between_the_sides() -> None:
    app = CompareApp()
    async with app.run_test(size=WIDE) as pilot:
        screen = await diffed(pilot)
        order = ["compare-reasoning-a", "compare-reasoning-b", "compare-answer-a", "compare-answer-b"]
        await wait_for(pilot, lambda: app.focused is not None)
        assert app.focused.id == order[0]
        for expected in order[1:] + order[:1]:
            await pilot.press("tab")
            assert app.focused is not None and app.focused.id == expected
        for expected in reversed(order):
            await pilot.press("shift+tab")
            assert app.focused is not None and app.focused.id == expected
        screen.set_focus(None)
        await pilot.press("tab")
        assert app.focused is not None and app.focused.id == order[0]


async def test_the_bindings_have_ids_and_the_palette_lists_the_screens_commands() -> None:
    ids = {binding.id for binding in CompareScreen.BINDINGS}
    assert ids == {"compare.close", "compare.next_pane", "compare.previous_pane"}
    app = CompareApp()
    async with app.run_test(size=WIDE) as pilot:
        screen = await diffed(pilot)
        titles = [command.title for command in app.get_system_commands(screen)]
        for title, _, _ in CompareScreen.PALETTE:
            assert title in titles
        next_side = next(c for c in app.get_system_commands(screen) if c.title == "Focus the other side")
        await next_side.callback()
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "compare-reasoning-b"


async def test_side_by_side_when_wide_stacked_when_narrow() -> None:
    for size, narrow in ((WIDE, False), (SMALL, True)):
        app = CompareApp()
        async with app.run_test(size=size) as pilot:
            screen = await diffed(pilot)
            assert screen.has_class("-narrow") == narrow
            regions = {f"{p.stage}-{p.side}": p.region for p in screen.panes}
            if narrow:
                order = ["reasoning-a", "reasoning-b", "answer-a", "answer-b"]
                assert all(regions[x].bottom <= regions[y].y for x, y in zip(order, order[1:]))
                assert all(r.width == size[0] for r in regions.values())
            else:
                for stage in ("reasoning", "answer"):
                    a, b = regions[f"{stage}-a"], regions[f"{stage}-b"]
                    assert a.y == b.y and a.right <= b.x
                assert regions["reasoning-a"].bottom <= regions["answer-a"].y
            assert all(r.height >= 3 for r in regions.values())


async def test_a_long_text_scrolls_in_its_own_pane() -> None:
    long = CompareSide("reasoning 1/2", "\n".join(f"Step {i}: think." for i in range(200)), "Yes.")
    app = CompareApp(long, B)
    async with app.run_test(size=SMALL) as pilot:
        screen = await diffed(pilot)
        pane = screen.pane("reasoning", "a")
        assert pane.max_scroll_y > 0 and app.focused is pane
        await pilot.press("end")
        await wait_for(pilot, lambda: pane.scroll_y == pane.max_scroll_y)
        assert screen.pane("reasoning", "b").scroll_y == 0


# --- snapshots -----------------------------------------------------------------------------------


async def _diffed(pilot: Pilot) -> None:
    await diffed(pilot)


def test_snapshot_stacked_at_80x24(snap_compare) -> None:
    assert snap_compare(CompareApp(), terminal_size=SMALL, run_before=_diffed)


def test_snapshot_side_by_side_at_120x36(snap_compare) -> None:
    assert snap_compare(CompareApp(), terminal_size=WIDE, run_before=_diffed)
