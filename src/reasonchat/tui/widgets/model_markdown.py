"""The one way model text is rendered as Markdown in the app: line breaks as written, links inert.

Imported only where Markdown is about to be shown, never by a module a screen imports at start:
markdown-it and Textual's Markdown take a tenth of a second to import, which a first frame must not
wait for (``StagePane`` mounts its Markdown after the first frame)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.highlight import highlight
from textual.widget import Widget
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownBlock

from reasonchat.line_breaks import markdown_parser
from reasonchat.tui.widgets import markdown_blocks

# Everything a first use compiles: linkify's and the block rules' regular expressions, and the
# lexers of the languages models write most (Python's alone took 37-65 ms).
_WARM_UP_TEXT = """# Title

Text with **bold**, *emphasis*, `code`, ~~struck~~ and a link: https://example.com
a second line

- item
  1. nested

> quoted

| a | b |
|---|:-:|
| 1 | 2 |
"""
WARM_UP_LANGUAGES = ("python", "bash", "javascript", "json", "text")


class ModelMarkdown(Markdown):
    # Blocks that look exactly like Textual's but cost fewer widgets and fewer styled nodes; the
    # inline styles they leave to the document are here (see markdown_blocks).
    BLOCKS = markdown_blocks.BLOCKS
    COMPONENT_CLASSES = set(markdown_blocks.INLINE_STYLES)
    DEFAULT_CSS = markdown_blocks.INLINE_STYLES_CSS

    def __init__(self, markdown: str | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        # Links are never opened by the app: model text must not launch anything.
        super().__init__(markdown, id=id, classes=classes, parser_factory=markdown_parser, open_links=False)


class StageMarkdown(ModelMarkdown):
    """A stage pane's Markdown; its first child is the spacer that stands for the hidden blocks."""

    def compose(self) -> ComposeResult:
        yield Widget(classes="stage-spacer")

    @property
    def spacer(self) -> Widget:
        return self.query_one(".stage-spacer", Widget)

    def blocks(self) -> list[MarkdownBlock]:
        return [child for child in self.children if isinstance(child, MarkdownBlock)]


def warm_up() -> None:
    """Pay, in a thread before any model text arrives, what the first stream would pay on the UI
    thread: compiling the parser's and the highlighters' regular expressions (a first code block
    held a stream's first frame up by ~0.1 s). Both keep them for the process."""
    markdown_parser().parse(_WARM_UP_TEXT)
    for language in WARM_UP_LANGUAGES:
        highlight("x = 1\n", language=language)
