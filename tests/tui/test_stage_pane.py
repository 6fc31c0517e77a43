"""The streaming pane: what a long, fast stage leaves on screen equals a full render of its text
(blocks far above the view are hidden while it streams and come back on scroll and on resize), and
the Markdown it streams is appended in bounded steps."""

from __future__ import annotations

import gc

from textual.pilot import Pilot

from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.settings import GenerationSettings
from reasonchat.tui.widgets.stage_pane import MAX_APPEND_LINES, StagePane, split_for_append
from tests.tui.helpers import SMALL, WIDE, chat, make_app, screen_lines, send, wait_idle, wait_ready


def long_markdown(sections: int) -> str:
    parts = []
    for i in range(sections):
        parts.append(
            f"## Step {i}\n\nWe check column {i}:\nones carry {i % 3}\nso the partial sum holds.\n\n"
            f"- the **premise** holds for {i}\n- `x + {i}` stays below the bound\n\n"
            f"```python\ntotal += {i}\n```\n\n"
            f"| col | value |\n|---|---|\n| {i} | {i * i} |\n\n"
        )
    return "".join(parts) + "So the result is consistent."


def script_for(text: str):
    def script(request) -> str:
        return text if request.stage == "reasoning" else "Done."

    return script



async def settled(pilot: Pilot, pane: StagePane) -> None:
    await pilot.pause()
    await pane.settle()
    await pilot.pause()


async def streamed_app_state(pilot: Pilot, text: str) -> StagePane:
    screen = chat(pilot.app)
    await wait_ready(pilot)
    await send(pilot, "go")
    await wait_idle(pilot)
    pane = screen.turn_view.pane("reasoning")
    assert pane.text == text
    return pane


def app_for(text: str):
    backend = ScriptedBackend(script_for(text))
    return make_app(backend, settings=GenerationSettings(max_new_tokens=10**6), context_limit=10**7)


async def test_a_long_stream_ends_equal_to_a_full_render_top_and_bottom(monkeypatch) -> None:
    text = long_markdown(40)
    app = app_for(text)
    whole_renders: list[str] = []
    render_whole = StagePane._render_whole

    async def counting(self: StagePane, markdown: str) -> None:
        if markdown:
            whole_renders.append(self.stage)
        await render_whole(self, markdown)

    monkeypatch.setattr(StagePane, "_render_whole", counting)
    async with app.run_test(size=SMALL) as pilot:
        pane = await streamed_app_state(pilot, text)
        assert whole_renders == [], "the streamed blocks already equal the full parse: no second render"
        assert pane.hidden_blocks > 0, "far blocks are hidden while the pane follows the bottom"
        assert pane.scroll.max_scroll_y > 0 and pane.scroll.scroll_y == pane.scroll.max_scroll_y
        streamed_bottom = screen_lines(pilot)
        pane.scroll.scroll_home(animate=False)
        await settled(pilot, pane)
        assert pane.hidden_blocks == 0, "scrolling up shows the hidden blocks again"
        streamed_top = screen_lines(pilot)

        stats = chat(app).conversation.turns[-1].reasoning_stats
        await pane.show(text, stats)  # a full render of the final text, from the top
        await settled(pilot, pane)
        assert screen_lines(pilot) == streamed_top
        pane.scroll.scroll_end(animate=False)
        await settled(pilot, pane)
        assert screen_lines(pilot) == streamed_bottom


async def test_scrolling_up_part_way_shows_the_same_lines_as_a_full_render() -> None:
    text = long_markdown(40)
    app = app_for(text)
    async with app.run_test(size=SMALL) as pilot:
        pane = await streamed_app_state(pilot, text)
        target = pane.scroll.max_scroll_y // 2
        pane.scroll.scroll_to(y=target, animate=False)
        await settled(pilot, pane)
        streamed = screen_lines(pilot)
        await pane.show(text, chat(app).conversation.turns[-1].reasoning_stats)
        await settled(pilot, pane)
        pane.scroll.scroll_to(y=target, animate=False)
        await settled(pilot, pane)
        assert screen_lines(pilot) == streamed


async def test_a_resize_while_blocks_are_hidden_lays_them_out_again() -> None:
    text = long_markdown(40)
    app = app_for(text)
    async with app.run_test(size=SMALL) as pilot:
        pane = await streamed_app_state(pilot, text)
        assert pane.hidden_blocks > 0
        await pilot.resize_terminal(*WIDE)
        await settled(pilot, pane)
        await settled(pilot, pane)
        pane.scroll.scroll_end(animate=False)
        await settled(pilot, pane)
        resized = screen_lines(pilot)
        await pane.show(text, chat(app).conversation.turns[-1].reasoning_stats)
        await settled(pilot, pane)
        pane.scroll.scroll_end(animate=False)
        await settled(pilot, pane)
        assert screen_lines(pilot) == resized


async def test_a_text_whose_streamed_parse_differs_is_rendered_whole() -> None:
    # A reference-style link is resolved across the whole document: the streamed paragraph that
    # used it came before its definition, so the pane renders the final text once more.
    text = "See [the note][n] first.\n\n" + "filler line\n" * 5 + "\n[n]: https://example.invalid\n"
    app = app_for(text)
    async with app.run_test(size=WIDE) as pilot:
        pane = await streamed_app_state(pilot, text)
        streamed = screen_lines(pilot)
        await pane.show(text, chat(app).conversation.turns[-1].reasoning_stats)
        await settled(pilot, pane)
        assert screen_lines(pilot) == streamed


def test_appends_are_bounded_and_end_at_a_line_end() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    pieces = []
    rest = text
    while rest:
        head, rest = split_for_append(rest)
        pieces.append(head)
    assert "".join(pieces) == text
    assert all(piece.count("\n") == MAX_APPEND_LINES for piece in pieces[:-1])
    # A long line (one growing paragraph) is not cut: re-rendering it per piece would cost more.
    assert split_for_append("x" * 100_000) == ("x" * 100_000, "")
    assert split_for_append("a\nb") == ("a\nb", "")


async def test_no_full_collection_may_run_while_a_stage_streams(monkeypatch) -> None:
    # A full pass over a long stage's widgets stalled keys and frames by up to 160 ms.
    before = gc.get_threshold()
    thresholds: list[int] = []
    write = StagePane.write

    def recording(self: StagePane, text: str) -> None:
        thresholds.append(gc.get_threshold()[2])
        write(self, text)

    monkeypatch.setattr(StagePane, "write", recording)
    text = long_markdown(3)
    async with app_for(text).run_test(size=SMALL) as pilot:
        await streamed_app_state(pilot, text)
    assert thresholds and min(thresholds) > 10**9
    assert gc.get_threshold() == before, "the collector's own thresholds are back once the app has gone"
