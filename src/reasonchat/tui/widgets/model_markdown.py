"""The one way model text is rendered as Markdown in the app: line breaks as written, links inert."""

from __future__ import annotations

from textual.widgets import Markdown

from reasonchat.line_breaks import markdown_parser


class ModelMarkdown(Markdown):
    def __init__(self, markdown: str | None = None, *, id: str | None = None, classes: str | None = None) -> None:
        # Links are never opened by the app: model text must not launch anything.
        super().__init__(markdown, id=id, classes=classes, parser_factory=markdown_parser, open_links=False)
