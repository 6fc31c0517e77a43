"""Context-window arithmetic: how full the window is, how much room a prompt must leave, and which
old turns to drop so a message fits. The chat screen's meter and overflow dialog use it.

Pure: no textual, no torch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from reasonchat.conversation import Conversation, Turn

WARNING_AT = 0.70
ERROR_AT = 0.90
Level = Literal["ok", "warning", "error"]


def level_of(tokens: int, limit: int) -> Level:
    fraction = tokens / limit if limit else 1.0
    if fraction >= ERROR_AT:
        return "error"
    if fraction >= WARNING_AT:
        return "warning"
    return "ok"


@dataclass(frozen=True)
class ContextUsage:
    """What the current turn occupies: its reasoning prompt (the history plus the new message), then
    what each stage generated."""

    limit: int
    prompt: int = 0
    reasoning: int = 0
    answer: int = 0

    @property
    def total(self) -> int:
        return self.prompt + self.reasoning + self.answer

    @property
    def level(self) -> Level:
        return level_of(self.total, self.limit)

    @classmethod
    def of_turn(cls, turn: Turn | None, limit: int) -> ContextUsage:
        """The usage a finished (or saved) turn left; zero for a turn without stats (an import).

        The total is ``turn.context_tokens()``, the figure the history lists, split into its parts.
        """
        if turn is None or not (total := turn.context_tokens()):
            return cls(limit)
        reasoning, answer = turn.reasoning_stats, turn.answer_stats
        if answer is not None and answer.prompt_tokens:
            # The answer's prompt is the reasoning prompt, then the reasoning with the stage headers.
            prompt = min(reasoning.prompt_tokens, answer.prompt_tokens) if reasoning else answer.prompt_tokens
            return cls(limit, prompt, answer.prompt_tokens - prompt, answer.new_tokens)
        assert reasoning is not None  # context_tokens counted the reasoning stage
        return cls(limit, reasoning.prompt_tokens, total - reasoning.prompt_tokens)


def generation_reserve(max_new_tokens: int, limit: int) -> int:
    """Room a prompt must leave to count as fitting: a full stage, but never more than a quarter of
    the window (a tiny window with the default 3,000 new tokens would otherwise fit nothing)."""
    return max(1, min(max_new_tokens, limit // 4))


def drop_oldest_turns(
    conversation: Conversation,
    text: str,
    count_tokens: Callable[[str], int],
    limit: int,
    reserve: int,
) -> tuple[Conversation | None, int]:
    """A copy of ``conversation`` without its oldest turns, as few dropped as possible so that sending
    ``text`` leaves ``reserve`` tokens in ``limit``. ``(None, n)`` when even no history is too much.

    The copy is a new conversation (a new id): the saved original keeps every turn.
    """

    def fits(dropped: int) -> bool:
        probe = Conversation(system_prompt=conversation.system_prompt)
        probe.turns = [*conversation.turns[dropped:], Turn(user=text)]
        return count_tokens(probe.stage_prompt(len(probe.turns) - 1, "reasoning")) + reserve <= limit

    turns = len(conversation.turns)
    if not fits(turns):
        return None, turns
    # Fewer dropped turns means a longer prompt: binary search for the smallest count that fits.
    low, high = 0, turns
    while low < high:
        middle = (low + high) // 2
        if fits(middle):
            high = middle
        else:
            low = middle + 1
    shortened = Conversation(
        system_prompt=conversation.system_prompt,
        title=f"{conversation.title} (continued)" if conversation.title else "",
        model=conversation.model,
        turns=copy.deepcopy(conversation.turns[low:]),
    )
    return shortened, low
