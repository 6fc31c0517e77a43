"""Line breaks as the model wrote them: a single newline in model text is a line break, not a space.

Reasoning is line-structured ("ones: 2+7=9 -> 9" then "tens: ..."); CommonMark joins such lines into
one paragraph (a *soft* break renders as a space). Everything that renders model text as Markdown uses
``markdown_parser`` (a core rule turns soft breaks into hard ones after inline parsing, so lists,
fences, tables and headings parse exactly as before), and the Markdown export writes the breaks
explicitly (``with_hard_breaks``) so that any other renderer shows the same lines.

Pure: markdown-it only (no textual, no torch).
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore

# The parser Textual's Markdown widget uses when none is given.
PRESET = "gfm-like"


def _soft_to_hard(state: StateCore) -> None:
    for token in state.tokens:
        if token.type == "inline" and token.children:
            for child in token.children:
                if child.type == "softbreak":
                    child.type, child.tag = "hardbreak", "br"


def markdown_parser() -> MarkdownIt:
    """A fresh parser (Textual's ``Markdown(parser_factory=...)`` calls it for every parse)."""
    parser = MarkdownIt(PRESET)
    parser.core.ruler.push("reasonchat_hard_breaks", _soft_to_hard)
    return parser


def with_hard_breaks(markdown: str) -> str:
    """``markdown`` with every soft break in a paragraph made explicit (a backslash at the end of the
    line, CommonMark's hard break), so the file renders with the lines the model wrote.

    A paragraph whose line ends cannot be matched to its breaks (an inline code span spanning lines)
    is left as written rather than risk a backslash inside the code.
    """
    lines = markdown.split("\n")
    tokens = MarkdownIt(PRESET).parse(markdown)
    marked: set[int] = set()
    for index, token in enumerate(tokens):
        if token.type != "inline" or token.map is None or tokens[index - 1].type != "paragraph_open":
            continue
        first, end = token.map
        breaks = [child.type for child in token.children or () if child.type in ("softbreak", "hardbreak")]
        if len(breaks) != end - first - 1:
            continue
        marked.update(first + offset for offset, kind in enumerate(breaks) if kind == "softbreak")
    return "\n".join(line + "\\" if number in marked else line for number, line in enumerate(lines))
