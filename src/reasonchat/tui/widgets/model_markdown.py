"""The one way model text is rendered as Markdown in the app: line breaks as written, links inert.

Imported only where Markdown is about to be shown, never by a module a screen imports at start:
markdown-it and Textual's Markdown take a tenth of a second to import, which a first frame must not
wait for (``StagePane`` mounts its Markdown after the first frame)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Markdown
from textual.widgets.markdown import MarkdownBlock

from reasonchat.line_breaks import markdown_parser


class ModelMarkdown(Markdown):
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
