"""Line breaks as written: soft breaks become hard ones, Markdown structure stays."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from reasonchat.line_breaks import PRESET, markdown_parser, with_hard_breaks

REASONING = "ones: 2+7=9 -> 9\ntens: 8+3=11 -> 19\nhundreds: 4+0+1=5 -> 519\nresult: 519"
STRUCTURED = (
    "First line\nsecond line\n\n"
    "- item one\n  continued\n- item two\n\n"
    "1. first\n2. second\n\n"
    "```python\nx = 1\ny = 2\n```\n\n"
    "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
    "# Heading\n\n"
    "> quoted\n> lines\n"
)


def block_types(text: str, parser: MarkdownIt) -> list[str]:
    return [token.type for token in parser.parse(text) if token.type != "inline"]


def test_every_line_of_a_reasoning_is_its_own_line() -> None:
    html = markdown_parser().render(REASONING)
    assert html.count("<br />") == 3
    assert "9<br />\ntens" in html


def test_lists_fences_tables_and_headings_parse_as_before() -> None:
    plain, ours = MarkdownIt(PRESET), markdown_parser()
    assert block_types(STRUCTURED, ours) == block_types(STRUCTURED, plain)
    html = ours.render(STRUCTURED)
    assert "<pre><code class=\"language-python\">x = 1\ny = 2\n</code></pre>" in html
    assert "<table>" in html and "<h1>Heading</h1>" in html
    assert "item one<br />\ncontinued" in html and "quoted<br />\nlines" in html


def test_the_export_form_renders_the_same_lines_anywhere() -> None:
    exported = with_hard_breaks(STRUCTURED + "\n" + REASONING)
    # A standard CommonMark renderer (no rule of ours) shows the lines of the hard-break parser.
    assert MarkdownIt(PRESET).render(exported) == markdown_parser().render(STRUCTURED + "\n" + REASONING)
    assert "```python\nx = 1\ny = 2\n```" in exported  # nothing added inside code
    assert "| 1 | 2 |" in exported


def test_a_code_span_across_lines_is_left_as_written() -> None:
    text = "see `a\nb` here\nand more"
    assert with_hard_breaks(text) == text


def test_a_line_that_already_breaks_hard_is_not_doubled() -> None:
    assert with_hard_breaks("one  \ntwo\nthree") == "one  \ntwo\\\nthree"


lines = st.lists(st.sampled_from(["word", "- item", "1. num", "```", "# head", "> quote", "", "| a |", "x  "]), max_size=12)


@given(lines)
def test_export_and_app_agree_on_any_mix(parts: list[str]) -> None:
    text = "\n".join(parts)
    assert MarkdownIt(PRESET).render(with_hard_breaks(text)) == markdown_parser().render(text)
