"""Self-consistency: how many of a turn's sampled versions reach the same final answer.

Pure. Answers are compared by what they conclude, not word for word: the last number in the answer
(the demo model ends on "482 + 1937 = 2419"; most reasoning models end on the result), else the whole
answer with case, spacing and closing punctuation folded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

MAX_SAMPLES = 64  # a vote over more is rarely worth the minutes it takes on one GPU
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def final_answer(text: str | None) -> str | None:
    """What ``text`` concludes, as compared across samples (None: no answer)."""
    if text is None or not text.strip():
        return None
    numbers = _NUMBER.findall(text)
    if numbers:
        return numbers[-1].replace(",", "").rstrip(".")
    return " ".join(text.lower().split()).rstrip(".!")


@dataclass(frozen=True)
class Vote:
    answer: str | None  # the most common final answer (None: no sample answered)
    count: int  # how many samples reached it
    samples: int  # how many were counted

    @property
    def share(self) -> float:
        return self.count / self.samples if self.samples else 0.0

    def describe(self) -> str:
        if self.answer is None:
            return f"no answer in {self.samples} sample(s)"
        return f"{self.count} of {self.samples} agree on {self.answer} ({self.share:.0%})"


def vote(answers: Iterable[str | None]) -> Vote:
    """The most common final answer among ``answers`` (the first reached, on a tie)."""
    finals = [final_answer(a) for a in answers]
    counted = Counter(f for f in finals if f is not None)
    if not counted:
        return Vote(None, 0, len(finals))
    best = max(counted, key=lambda f: (counted[f], -finals.index(f)))
    return Vote(best, counted[best], len(finals))
