"""Synthetic conversation history for the benchmarks (local and served): filler turns of a given size."""

from __future__ import annotations

import random

from reasonchat.conversation import Conversation, Turn
from reasonchat.engine.protocol import Backend

_WORDS = (
    "model cache token prompt answer reason column carry digit number sum question history turn "
    "stage stream terminal window pane meter limit budget engine layer vector weight matrix value "
    "first second third because therefore so then next finally result check again"
).split()


def synthetic_reasoning(backend: Backend, tokens: int, seed: int = 0) -> str:
    """Filler reasoning lines until the text is about ``tokens`` long."""
    rng = random.Random(seed)
    lines: list[str] = []
    while backend.count_tokens("\n".join(lines)) < tokens:
        lines.append(" ".join(rng.choice(_WORDS) for _ in range(16)).capitalize() + ".")
    return "\n".join(lines)


def synthetic_conversation(
    backend: Backend, history_tokens: int, seed: int = 0, id_prefix: str = "bench"
) -> Conversation:
    """Complete turns of filler text until the next reasoning prompt is about ``history_tokens`` long;
    the last turn is a fresh question."""
    rng = random.Random(seed)

    def sentence(words: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."

    conversation = Conversation(id=f"{id_prefix}-{history_tokens}-{seed}")
    question = Turn(user="Summarise our conversation so far in a few sentences.")
    while True:
        turn = conversation.add_turn(" ".join(sentence(12) for _ in range(2)) + " Why?")
        turn.reasoning = "\n".join(sentence(16) for _ in range(6))
        turn.answer = " ".join(sentence(14) for _ in range(4))
        conversation.turns.append(question)
        prompt = conversation.stage_prompt(len(conversation.turns) - 1, "reasoning")
        if backend.count_tokens(prompt) >= history_tokens:
            return conversation
        conversation.turns.pop()
