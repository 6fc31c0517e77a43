"""Markdown blocks that look exactly like Textual's own but cost fewer widgets and fewer styled nodes.

A streaming pane mounts a frame's worth of new blocks at a time, and Textual's cost per frame grows
with the widgets it mounts, styles and lays out (each has its own message pump). Textual draws a list
as five widgets per item (a Horizontal holding a bullet and a Vertical holding the paragraph); a list
whose items are each one paragraph, as model text nearly always has, is drawn here by the list widget
itself, line for line the same (``tests/tui/test_markdown_blocks.py`` compares the two renders).
Any other list is composed by Textual as before.

Selecting text in such a list copies the items' text without their bullets.

Every block also leaves its inline styles (``em``, ``strong``, ``s``, ``code_inline``) to the
document: Textual styles each component class of a widget as a node of its own when the widget is
mounted, four for every block, while a span's style is looked up on the nearest ancestor that has
the class. ``ModelMarkdown`` has them, with the rules Textual gives them on a block.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.content import Content
from textual.css.styles import RulesMap
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions, Visual
from textual.widgets._markdown import (  # the list blocks are not exported by textual.widgets.markdown
    MarkdownBulletList,
    MarkdownListItem,
    MarkdownOrderedList,
    MarkdownOrderedListItem,
    MarkdownParagraph,
)
from textual.widgets.markdown import Markdown, MarkdownBlock, MarkdownFence

_BULLET = "model-list--bullet"
# The component classes of Textual's MarkdownBlock: the styles of a paragraph's inline spans.
INLINE_STYLES = frozenset({"em", "strong", "s", "code_inline"})
INLINE_STYLES_CSS = """
ModelMarkdown {
    &:ansi > .code_inline {
        background: ansi_default !important;
    }
    &:dark > .code_inline {
        background: $warning 10%;
        color: $text-warning 95%;
    }
    &:light > .code_inline {
        background: $error 5%;
        color: $text-error 95%;
    }
    & > .em {
        text-style: italic;
    }
    & > .strong {
        text-style: bold;
    }
    & > .s {
        text-style: strike;
    }
}
"""


def inline_styles_from_document(block_class: type[MarkdownBlock]) -> type[MarkdownBlock]:
    """Class decorator: ``block_class`` keeps its own component classes but not the inline styles'.

    What ``inherit_component_classes=False`` does, set after the class is made: Textual's
    ``Widget.__init_subclass__`` does not take that argument."""
    inherited = set().union(*(base.__dict__.get("COMPONENT_CLASSES", set()) for base in block_class._css_bases(block_class)))
    block_class.COMPONENT_CLASSES = inherited - INLINE_STYLES
    block_class._inherit_component_classes = False
    return block_class


def styled_by_document(block_class: type[MarkdownBlock]) -> type[MarkdownBlock]:
    """A subclass of Textual's ``block_class`` (same name, same CSS) whose inline styles are the
    document's."""
    namespace = {"__module__": __name__, "__doc__": block_class.__doc__}
    return inline_styles_from_document(type(block_class.__name__, (block_class,), namespace))


def one_paragraph_items(blocks: list[MarkdownBlock]) -> list[tuple[str, Content]] | None:
    """(bullet, paragraph) of each item, when every item is exactly one paragraph; else ``None``."""
    items: list[tuple[str, Content]] = []
    for block in blocks:
        if not isinstance(block, MarkdownListItem) or len(block._blocks) != 1:
            return None
        (paragraph,) = block._blocks
        if type(paragraph) is not PARAGRAPH:
            return None
        items.append((block.bullet, paragraph._content))
    return items or None


def ordered_symbols(blocks: list[MarkdownBlock], count: int) -> list[str]:
    """The numbers Textual's ordered list shows: from the first item's, right-aligned, ". " after."""
    start = 1
    if blocks and isinstance(blocks[0], MarkdownOrderedListItem):
        try:
            start = int(blocks[0].bullet)
        except ValueError:
            pass
    symbols = [f"{number}. " for number in range(start, start + count)]
    size = max(len(symbol) for symbol in symbols)
    return [symbol.rjust(size + 1) for symbol in symbols]


class ListItems(Visual):
    """The items of a list, each a bullet column with its paragraph wrapped beside it.

    The paragraphs are rendered as one Content, one item after another, so that the offsets Textual
    puts in the segments (which text selection reads) count lines across the whole list."""

    def __init__(self, bullets: list[Content], paragraphs: list[Content], bullet_style: Style) -> None:
        self.bullets = bullets
        self.paragraphs = paragraphs
        self.bullet_style = bullet_style
        self.text = Content("\n").join(paragraphs)

    def _text_width(self, width: int) -> int:
        return max(width - max(bullet.cell_length for bullet in self.bullets), 1)

    def _item_heights(self, rules: RulesMap, width: int) -> list[int]:
        text_width = self._text_width(width)
        return [max(paragraph.get_height(rules, text_width), 1) for paragraph in self.paragraphs]

    def render_strips(self, width: int, height: int | None, style: Style, options: RenderOptions) -> list[Strip]:
        if not width:
            return []
        text_width = self._text_width(width)
        lines = iter(self.text.render_strips(text_width, None, style, options))
        bullet_style = style + self.bullet_style
        # A bullet is not part of the text a selection reads (nor highlighted with it).
        bullet_options = RenderOptions(options.get_style, options.rules)
        strips: list[Strip] = []
        for bullet, rows in zip(self.bullets, self._item_heights(options.rules, width)):
            indent = bullet.cell_length
            (first,) = bullet.render_strips(indent, None, bullet_style, bullet_options)
            first = first.discard_meta()
            for row in range(rows):
                line = next(lines, Strip([]))
                lead = first if row == 0 else Strip.blank(indent, bullet_style.rich_style)
                strips.append(Strip.join([lead, line]))
        return strips[:height] if height is not None else strips

    def get_optimal_width(self, rules: RulesMap, container_width: int) -> int:
        indent = max(bullet.cell_length for bullet in self.bullets)
        return indent + max(paragraph.get_optimal_width(rules, container_width) for paragraph in self.paragraphs)

    def get_height(self, rules: RulesMap, width: int) -> int:
        return sum(self._item_heights(rules, width))


class _OneWidgetList:
    """A list drawn by itself (``ListItems``) when its items are one paragraph each.

    A mixin ahead of Textual's list class: Textual takes a widget's CSS (and CSS type names) from the
    first widget class among its bases only, which must stay Textual's list."""

    _blocks: list[MarkdownBlock]

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._items: list[tuple[str, Content]] | None = None

    def _symbols(self, items: list[tuple[str, Content]], blocks: list[MarkdownBlock]) -> list[str]:
        return [bullet for bullet, _ in items]

    def _take_items(self, blocks: list[MarkdownBlock]) -> list[tuple[str, Content]] | None:
        items = one_paragraph_items(blocks)
        if items is None:
            return None
        symbols = self._symbols(items, blocks)
        return [(symbol, paragraph) for symbol, (_, paragraph) in zip(symbols, items)]

    def compose(self) -> ComposeResult:
        self._items = self._take_items(self._blocks)
        if self._items is None:
            yield from super().compose()  # Textual's own widgets
        else:
            self._blocks.clear()

    def render(self) -> Visual:  # type: ignore[override]
        if self._items is None:
            return super().render()  # type: ignore[return-value]
        return ListItems(
            [Content(symbol) for symbol, _ in self._items],
            [paragraph for _, paragraph in self._items],
            self.get_visual_style(_BULLET),
        )

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        if self._items is None:
            return super().get_selection(selection)
        return selection.extract("\n".join(paragraph.plain for _, paragraph in self._items)), "\n"

    async def _update_from_block(self, block: MarkdownBlock) -> None:
        # A list that grows while it streams is redrawn in place, not remounted.
        if type(block) is type(self) and self._items is not None:
            items = self._take_items(block._blocks)
            if items is not None:
                self._items = items
                self._copy_context(block)
                self.refresh(layout=True)
                return
        await super()._update_from_block(block)


def bullet_css(widget_type: str) -> str:
    """The bullet's colours, as Textual's ``MarkdownBullet`` has them."""
    return f"""
    {widget_type} > .{_BULLET} {{
        color: $text-primary;
    }}
    {widget_type}:light > .{_BULLET} {{
        color: $text-secondary;
    }}
    """


@inline_styles_from_document
class ModelBulletList(_OneWidgetList, MarkdownBulletList):
    COMPONENT_CLASSES = {_BULLET}
    DEFAULT_CSS = bullet_css("ModelBulletList")


@inline_styles_from_document
class ModelOrderedList(_OneWidgetList, MarkdownOrderedList):
    COMPONENT_CLASSES = {_BULLET}
    DEFAULT_CSS = bullet_css("ModelOrderedList")

    def _symbols(self, items: list[tuple[str, Content]], blocks: list[MarkdownBlock]) -> list[str]:
        return ordered_symbols(blocks, len(items))


@inline_styles_from_document
class ModelFence(MarkdownFence):
    """Highlights its code once: Textual's fence highlights it when built and again when its styles
    are first applied, with the same arguments."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self._highlighted_for = self._highlight_key()

    def _highlight_key(self) -> tuple[str, str, bool, bool]:
        return self.code, self.lexer, self.app.native_ansi_color, self.app.current_theme.dark

    def notify_style_update(self) -> None:
        key = self._highlight_key()
        if key == self._highlighted_for:
            MarkdownBlock.notify_style_update(self)  # what MarkdownFence's does after highlighting
            return
        self._highlighted_for = key
        super().notify_style_update()

    def _copy_context(self, block: MarkdownBlock) -> None:
        super()._copy_context(block)
        if isinstance(block, ModelFence):
            self._highlighted_for = block._highlighted_for


PARAGRAPH = styled_by_document(MarkdownParagraph)
_OURS: dict[str, type[MarkdownBlock]] = {
    "paragraph_open": PARAGRAPH,
    "bullet_list_open": ModelBulletList,
    "ordered_list_open": ModelOrderedList,
    "fence": ModelFence,
    "code_block": ModelFence,
}
# What ModelMarkdown draws each kind of block with: ours, and Textual's others styled by the document.
BLOCKS: dict[str, type[MarkdownBlock]] = {
    name: _OURS.get(name) or styled_by_document(block_class) for name, block_class in Markdown.BLOCKS.items()
}
