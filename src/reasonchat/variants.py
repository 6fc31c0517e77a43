"""A turn's versions named and listed: pure (no torch, no textual), for the CLI, the app and exports.

A version is one answer of one reasoning variant, named ``R.A`` (both counted from 1): ``2.1`` is the
first answer of the second reasoning. ``R`` alone names reasoning ``R`` with the answer it had last.
"""

from __future__ import annotations

from dataclasses import dataclass

from reasonchat.conversation import Mark, Turn
from reasonchat.errors import UserError
from reasonchat.sanitize import for_screen

FIRST_WORDS = 8


@dataclass(frozen=True)
class Version:
    reasoning: int  # indices from 0
    answer: int
    active: bool
    # "reasoning": the first answer of a reasoning variant (a new reasoning); "answer": a later one.
    stage: str
    source: str
    mark: Mark | None
    reasoning_text: str | None
    answer_text: str | None

    @property
    def name(self) -> str:
        return f"{self.reasoning + 1}.{self.answer + 1}"


def versions(turn: Turn) -> list[Version]:
    out = []
    for r, variant in enumerate(turn.variants):
        for a, answer in enumerate(variant.answers):
            out.append(Version(
                r, a, (r, a) == turn.position, "reasoning" if a == 0 else "answer", variant.source,
                answer.mark, variant.reasoning, answer.answer,
            ))  # fmt: skip
    return out


def parse_version(name: str, turn: Turn) -> tuple[int, int | None]:
    """``R`` or ``R.A`` (from 1) as indices into ``turn`` (answer None: the reasoning's own)."""
    head, dot, tail = name.strip().partition(".")
    try:
        reasoning = int(head) - 1
        answer = int(tail) - 1 if dot else None
    except ValueError:
        raise UserError(f"a version is R or R.A (numbers from 1), not {name!r}") from None
    if not 0 <= reasoning < len(turn.variants):
        raise UserError(f"this turn has {len(turn.variants)} reasoning variant(s); there is no {reasoning + 1}")
    count = len(turn.variants[reasoning].answers)
    if answer is not None and not 0 <= answer < count:
        raise UserError(f"reasoning {reasoning + 1} has {count} answer(s); there is no {answer + 1}")
    return reasoning, answer


def first_words(text: str | None, count: int = FIRST_WORDS) -> str:
    if text is None:
        return "(not generated)"
    words = for_screen(text).split()
    if not words:
        return "(empty)"
    return " ".join(words[:count]) + (" …" if len(words) > count else "")


def position_label(turn: Turn) -> str:
    """"reasoning 2/3 · answer 1/2" for a turn with versions; "" for one with a single version."""
    if not turn.changed:
        return ""
    answers = len(turn.current.answers)
    return f"reasoning {turn.active + 1}/{len(turn.variants)} · answer {turn.current.active_answer + 1}/{answers}"
