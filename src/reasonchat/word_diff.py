"""A word-level diff of two texts, for comparing two variants of a turn side by side.

Each side comes back as segments ``(text, kind)`` that join back into that side's text exactly
(whitespace, newlines and all): side A's kinds are ``"same"`` and ``"removed"``, side B's ``"same"``
and ``"added"``. Texts are split into tokens: runs of word characters, runs of other visible
characters (punctuation, symbols) and runs of whitespace; ``difflib.SequenceMatcher`` (no autojunk,
so a word used often is still matched) compares the visible tokens only, so a change of spacing or of
line breaks alone is no change. Whitespace between two changed tokens is part of the change (one
highlighted run), any other whitespace is ``"same"``.

Pure: no textual, no torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Literal

Kind = Literal["same", "removed", "added"]
Segment = tuple[str, Kind]

# Han, kana: scripts written without spaces, so each character is a word of its own.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Combining marks stay with the character they modify.
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
# A character of an unspaced script, a run of word characters, a run of other visible characters, a
# run of whitespace: every character is in exactly one token.
_TOKENS = re.compile(rf"[{_UNSPACED}][{_MARKS}]*|(?:(?![{_UNSPACED}])\w|[{_MARKS}])+|[^\w\s]+|\s+")
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class DiffSummary:
    """How much two texts share, counted in words (punctuation is diffed but not counted)."""

    words_a: int
    words_b: int
    common: int  # words matched between the two sides (the same count on each)
    changed: bool  # any token (word or punctuation) removed or added

    @property
    def removed(self) -> int:
        return self.words_a - self.common

    @property
    def added(self) -> int:
        return self.words_b - self.common

    @property
    def share(self) -> float:
        """Words in common over the words of both sides (``difflib``'s ratio, over words): 1.0 for
        texts with the same words, 0.0 for texts with none in common."""
        total = self.words_a + self.words_b
        if total == 0:
            return 0.0 if self.changed else 1.0
        return 2 * self.common / total

    @property
    def percent(self) -> int:
        """``share`` as a whole percentage that says 100 only when nothing changed and 0 only when
        nothing is shared."""
        if not self.changed:
            return 100
        percent = round(100 * self.share)
        if self.common and percent == 0:
            return 1
        return min(percent, 99)


def _tokens(text: str) -> list[str]:
    return _TOKENS.findall(text)


def _side(tokens: list[str], visible_kinds: list[Kind]) -> list[Segment]:
    """One side's segments: each visible token with its kind, whitespace ``"same"`` unless it lies
    between two changed tokens; neighbours of one kind merged."""
    segments: list[Segment] = []
    # kinds[i] for each token: visible tokens in order, whitespace decided by its neighbours.
    kinds: list[Kind] = []
    visible = 0
    for token in tokens:
        if token.isspace():
            kinds.append("same")  # decided below, once its next neighbour is known
        else:
            kinds.append(visible_kinds[visible])
            visible += 1
    for i, token in enumerate(tokens):
        if token.isspace() and 0 < i < len(tokens) - 1:
            before, after = kinds[i - 1], kinds[i + 1]
            if before != "same" and before == after:
                kinds[i] = before
    for token, kind in zip(tokens, kinds):
        if segments and segments[-1][1] == kind:
            segments[-1] = (segments[-1][0] + token, kind)
        else:
            segments.append((token, kind))
    return segments


def diff_with_summary(a: str, b: str) -> tuple[list[Segment], list[Segment], DiffSummary]:
    """``word_diff`` and its ``DiffSummary`` in one pass."""
    tokens_a, tokens_b = _tokens(a), _tokens(b)
    seen_a = [t for t in tokens_a if not t.isspace()]
    seen_b = [t for t in tokens_b if not t.isspace()]
    kinds_a: list[Kind] = ["removed"] * len(seen_a)
    kinds_b: list[Kind] = ["added"] * len(seen_b)
    common = 0
    # The shared start and end need no matcher (most variants of a turn share a lot of both).
    start = 0
    while start < len(seen_a) and start < len(seen_b) and seen_a[start] == seen_b[start]:
        start += 1
    end = 0
    while (
        end < len(seen_a) - start
        and end < len(seen_b) - start
        and seen_a[len(seen_a) - 1 - end] == seen_b[len(seen_b) - 1 - end]
    ):
        end += 1
    matched: list[tuple[int, int, int]] = [(0, 0, start)]
    middle_a, middle_b = seen_a[start : len(seen_a) - end], seen_b[start : len(seen_b) - end]
    if middle_a and middle_b:
        matcher = SequenceMatcher(None, middle_a, middle_b, autojunk=False)
        matched.extend((start + i, start + j, n) for i, j, n in matcher.get_matching_blocks())
    matched.append((len(seen_a) - end, len(seen_b) - end, end))
    for i, j, n in matched:
        for k in range(n):
            kinds_a[i + k] = "same"
            kinds_b[j + k] = "same"
            if _WORD.search(seen_a[i + k]):
                common += 1
    summary = DiffSummary(
        words_a=sum(1 for t in seen_a if _WORD.search(t)),
        words_b=sum(1 for t in seen_b if _WORD.search(t)),
        common=common,
        changed="removed" in kinds_a or "added" in kinds_b,
    )
    return _side(tokens_a, kinds_a), _side(tokens_b, kinds_b), summary


def word_diff(a: str, b: str) -> tuple[list[Segment], list[Segment]]:
    """The segments of ``a`` (``"same"``/``"removed"``) and of ``b`` (``"same"``/``"added"``); each
    side's texts joined give back that side's text exactly."""
    side_a, side_b, _ = diff_with_summary(a, b)
    return side_a, side_b


def summarize(a: str, b: str) -> DiffSummary:
    """How much of ``a`` and ``b`` is shared, in words."""
    return diff_with_summary(a, b)[2]
