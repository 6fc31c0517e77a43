"""What a search of saved conversations asks for: words to find, and filters on how turns were made.

Pure (no sqlite): the store turns a ``SearchQuery`` into SQL; the CLI's ``list --search`` and the
history screen's search box pass the user's text through ``parse``. A word ``source:edited`` or
``stop:answer_now`` filters instead of matching text, so "where did I step in" is one search away.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reasonchat.conversation import REASONING_SOURCES, STOP_REASONS
from reasonchat.errors import UserError

# filter name -> the values it accepts
FILTERS: dict[str, tuple[str, ...]] = {"source": REASONING_SOURCES, "stop": STOP_REASONS}
# The parts of a turn a search can be kept to (``list --in``).
WITHIN: tuple[str, ...] = ("question", "reasoning", "answer")
SEARCH_HELP = (
    "only conversations with a turn (or title) containing every word of TEXT; "
    f"source:{'|'.join(REASONING_SOURCES)} keeps turns by who wrote the reasoning, "
    "stop:REASON by how a stage ended (e.g. stop:answer_now, stop:budget)"
)


@dataclass(frozen=True)
class SearchQuery:
    words: tuple[str, ...] = ()
    # (filter name, value) pairs; a turn must satisfy every one
    filters: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    within: str | None = None  # one of ``WITHIN``: the words are looked for there only

    def __bool__(self) -> bool:
        return bool(self.words or self.filters)


def parse(text: str | None, within: str | None = None) -> SearchQuery:
    """Split ``text`` into words and ``name:value`` filters; an unknown value is a one-line error."""
    if within is not None and within not in WITHIN:
        raise UserError(f"unknown part of a turn {within!r} to search (choose from {', '.join(WITHIN)})")
    words: list[str] = []
    filters: list[tuple[str, str]] = []
    for term in (text or "").split():
        name, colon, value = term.partition(":")
        if colon and name.lower() in FILTERS:
            allowed = FILTERS[name.lower()]
            if value.lower() not in allowed:
                raise UserError(f"unknown {name.lower()} {value!r} in the search (choose from {', '.join(allowed)})")
            filters.append((name.lower(), value.lower()))
        else:
            words.append(term)
    return SearchQuery(tuple(words), tuple(filters), within)
