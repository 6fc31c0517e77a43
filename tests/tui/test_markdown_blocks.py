"""The app's Markdown blocks draw exactly what Textual's own draw, with fewer widgets.

Each text is rendered twice in a real Textual app, by ``ModelMarkdown`` and by the same widget with
Textual's stock blocks, and the screens are compared cell by cell (character, colours, text style).
"""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Offset
from textual.selection import Selection
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownFence

from reasonchat.tui.widgets.markdown_blocks import ModelBulletList, ModelOrderedList
from reasonchat.tui.widgets.model_markdown import ModelMarkdown

LONG = "a long item that has to wrap " * 6

TEXTS = {
    "bullets": (
        "- first, the **premise** holds\n- second, `x + y` stays *below* the bound\n"
        f"- {LONG}\n- a [link](https://example.com) and ~~struck~~ text\n"
    ),
    "ordered": "".join(f"{n}. item {n} {LONG if n == 10 else ''}\n" for n in range(1, 13)),
    "ordered from 7": "7. seven\n8. eight, `code`\n",
    "lines in an item": "- ones: 2+7=9 -> 9\n  tens: 8+3=11 -> 1\n- hundreds: 4+9+1=14\n",
    "nested": "- outer\n  - inner one\n  - inner two\n- back out\n",
    "two paragraphs in an item": "- para one\n\n  para two\n- next\n",
    "code in an item": "- run:\n\n  ```python\n  x = 1\n  ```\n- done\n",
    "empty item": "-\n- x\n",
    "loose": "- a\n\n- b\n\n- c\n",
    "inline styles in every block": (
        "# A **bold** `heading`\n\n### *third* ~~level~~\n\nText with **bold**, *em*, `code` and ~~struck~~.\n\n"
        "> a quote with `code` and **bold**\n\n| col `a` | **b** |\n|---|:-:|\n| *1* | `2` |\n\n---\n\n"
        "1. an *item* with `code`\n2. **two**\n"
    ),
    "a document": (
        "Let me work through this, checking each part as I go.\n\n"
        "- first, the **premise** holds because the sum is even\n"
        "- second, `x + y` stays below the bound we derived\n\n"
        "```python\nfor i in range(10):\n    total += i\n```\n\n"
        "## Then\n\n> quoted\n> - a list in a quote\n\n1. one\n2. two\n\nSo the *result* is consistent.\n"
    ),
}


class TextualBlocks(ModelMarkdown):
    """The same widget with Textual's own blocks: what ours must look like."""

    BLOCKS = Markdown.BLOCKS


class Page(App[None]):
    CSS = """
    Markdown { margin: 0; padding: 0; }
    .muted { color: $text-muted; }
    """

    def __init__(self, markdown: Markdown, theme: str) -> None:
        super().__init__()
        self.markdown = markdown
        self.theme = theme

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield self.markdown


def cells(app: App[None]) -> list[list[tuple[object, ...]]]:
    rows = []
    for strip in app.screen._compositor.render_strips():
        row = []
        for segment in strip:
            style = segment.style
            key = (
                (style.color, style.bgcolor, style.bold, style.italic, style.underline, style.strike, style.dim)
                if style
                else None
            )
            row.extend((char, key) for char in segment.text)
        rows.append(row)
    return rows


async def render(markdown: Markdown, text: str, size: tuple[int, int], theme: str) -> list[list[tuple[object, ...]]]:
    app = Page(markdown, theme)
    async with app.run_test(size=size) as pilot:
        await markdown.update(text)
        await pilot.pause()
        await pilot.pause()
        return cells(app)


def plain(rows: list[list[tuple[object, ...]]]) -> list[str]:
    return ["".join(str(cell[0]) for cell in row).rstrip() for row in rows]


@pytest.mark.parametrize("theme", ["textual-dark", "textual-light", "ansi-dark"])
@pytest.mark.parametrize("width", [24, 57, 100])
@pytest.mark.parametrize("name", list(TEXTS))
async def test_a_list_looks_as_textual_draws_it(name: str, width: int, theme: str) -> None:
    text = TEXTS[name]
    size = (width, 60)
    ours = await render(ModelMarkdown(classes="muted"), text, size, theme)
    reference = await render(TextualBlocks(classes="muted"), text, size, theme)
    assert plain(ours) == plain(reference)
    assert ours == reference


async def test_a_list_of_paragraph_items_is_one_widget_and_others_are_textuals() -> None:
    markdown = ModelMarkdown()
    async with Page(markdown, "textual-dark").run_test(size=(80, 40)) as pilot:
        await markdown.update(TEXTS["bullets"] + "\nBetween.\n\n" + TEXTS["nested"])
        await pilot.pause()
        flat, nested = markdown.query_children(ModelBulletList)
        assert not flat.children
        assert nested.children, "a list holding a list is composed by Textual"
        (inner,) = nested.query(ModelBulletList)
        assert not inner.children, "the inner list is one paragraph per item"


async def test_a_list_that_grows_while_streaming_is_redrawn_in_place() -> None:
    markdown = ModelMarkdown()
    items = [f"{n}. step {n} of the plan\n" for n in range(1, 8)]
    async with Page(markdown, "textual-dark").run_test(size=(60, 30)) as pilot:
        await markdown.append(items[0])
        await pilot.pause()
        (first,) = markdown.query_children(ModelOrderedList)
        for item in items[1:]:
            await markdown.append(item)
        await pilot.pause()
        (last,) = markdown.query_children(ModelOrderedList)
        assert last is first
        streamed = cells(pilot.app)
    reference = await render(TextualBlocks(), "".join(items), (60, 30), "textual-dark")
    assert plain(streamed) == plain(reference)
    assert streamed == reference


async def test_selecting_a_list_copies_its_items() -> None:
    markdown = ModelMarkdown()
    async with Page(markdown, "textual-dark").run_test(size=(80, 20)) as pilot:
        await markdown.update("- ones: 9\n  tens: 1\n- hundreds: 4\n")
        await pilot.pause()
        (items,) = markdown.query_children(ModelBulletList)
        assert items.get_selection(Selection(None, None)) == ("ones: 9\ntens: 1\nhundreds: 4", "\n")
        assert items.get_selection(Selection(Offset(0, 1), Offset(4, 2))) == ("tens: 1\nhund", "\n")


@pytest.mark.parametrize(("markdown_class", "at_mount"), [(ModelMarkdown, 1), (TextualBlocks, 2)])
async def test_a_fence_is_highlighted_once_and_again_for_a_new_theme(
    monkeypatch: pytest.MonkeyPatch, markdown_class: type[Markdown], at_mount: int
) -> None:
    calls: list[str] = []
    highlight = MarkdownFence.highlight.__func__  # type: ignore[attr-defined]

    def counted(cls: type[MarkdownFence], code: str, *args: object, **kwargs: object) -> object:
        calls.append(code)
        return highlight(cls, code, *args, **kwargs)

    monkeypatch.setattr(MarkdownFence, "highlight", classmethod(counted))
    markdown = markdown_class()
    async with Page(markdown, "textual-dark").run_test(size=(60, 20)) as pilot:
        await markdown.update("```python\nx = 1\n```\n")
        await pilot.pause()
        assert len(calls) == at_mount
        pilot.app.theme = "textual-light"  # the highlight's arguments change with the theme's darkness
        await pilot.pause()
        assert len(calls) > at_mount


async def test_no_block_styles_the_inline_spans_itself() -> None:
    """Each component class of a widget is styled as a node of its own at every mount: the inline
    styles live on the document only."""
    from textual.widgets.markdown import MarkdownBlock

    from reasonchat.tui.widgets.markdown_blocks import INLINE_STYLES

    markdown = ModelMarkdown()
    async with Page(markdown, "textual-dark").run_test(size=(80, 40)) as pilot:
        await markdown.update(TEXTS["inline styles in every block"] + "\n" + TEXTS["a document"])
        await pilot.pause()
        blocks = list(markdown.query(MarkdownBlock))
        assert len(blocks) > 10
        assert all(not type(block)._get_component_classes() & INLINE_STYLES for block in blocks)
        assert INLINE_STYLES <= ModelMarkdown._get_component_classes()
