"""Context-window arithmetic (``reasonchat.budget``): levels, the usage a turn left, the room a prompt
must leave, dropping old turns; and that the history's Tokens column and the meter agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reasonchat.budget import ContextUsage, drop_oldest_turns, generation_reserve, level_of
from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.engine.turn import TurnRunner
from reasonchat.store import Store


def test_levels_switch_at_70_and_90_percent() -> None:
    assert [level_of(n, 1000) for n in (699, 700, 899, 900, 1200)] == [
        "ok", "warning", "warning", "error", "error",
    ]  # fmt: skip


def test_usage_of_a_saved_turn() -> None:
    # The answer's prompt (124) is the reasoning prompt, the 20 reasoning tokens and 4 of stage headers.
    turn = Turn("q", "r", "a", StageStats(prompt_tokens=100, new_tokens=20),
                StageStats(prompt_tokens=124, new_tokens=5))  # fmt: skip
    usage = ContextUsage.of_turn(turn, 32000)
    assert (usage.prompt, usage.reasoning, usage.answer, usage.total) == (100, 24, 5, 129)
    assert usage.total == turn.context_tokens()
    assert ContextUsage.of_turn(Turn("imported", "r", "a"), 32000).total == 0


def test_usage_of_a_turn_whose_answer_never_began() -> None:
    # Cancelled before the answer started: its stats count no prompt, the reasoning's figures stand.
    turn = Turn("q", "r", "", StageStats(prompt_tokens=100, new_tokens=20), StageStats(stop_reason="cancelled"))
    usage = ContextUsage.of_turn(turn, 32000)
    assert (usage.prompt, usage.reasoning, usage.answer, usage.total) == (100, 20, 0, 120)
    assert usage.total == turn.context_tokens()


def answered_turn() -> Turn:
    """A turn whose answer stage has stats (its prompt holds the reasoning and the stage headers)."""
    conv = Conversation()
    conv.add_turn("What is 12+30?")
    return TurnRunner(ScriptedBackend()).run(conv)


def reasoning_only_turn() -> Turn:
    """A turn where only the reasoning has stats (the answer has not run)."""
    return Turn("Tell me more", "thinking", None, StageStats(prompt_tokens=80, new_tokens=7))


@pytest.mark.parametrize("make_turn", [answered_turn, reasoning_only_turn])
def test_history_tokens_equal_the_meter_total(make_turn: Callable[[], Turn], isolated_dirs: Path) -> None:
    conv = Conversation(title="sky")
    conv.turns = [Turn("imported", "r", "a"), make_turn()]
    with Store.open() as store:
        store.save(conv)
        (summary,) = store.list()
        saved = store.get(conv.id)
    meter = ContextUsage.of_turn(saved.turns[-1], 32000)
    assert summary.tokens == meter.total == conv.context_tokens() > 0


def conversation_of(n: int) -> Conversation:
    conv = Conversation(title="long talk")
    for i in range(n):
        turn = conv.add_turn(f"question {i} " + "pad " * 10)
        turn.reasoning, turn.answer = "thinking", "answer"
    return conv


def test_drop_oldest_turns_drops_as_few_as_fit() -> None:
    count = ScriptedBackend().count_tokens
    conv = conversation_of(10)

    def prompt(turns: list[Turn]) -> int:
        probe = Conversation(system_prompt=conv.system_prompt, turns=[*turns, Turn("new message")])
        return count(probe.stage_prompt(len(probe.turns) - 1, "reasoning"))

    limit = prompt(conv.turns[4:]) + 10  # fits after dropping 4 turns (reserve 10), not after 3
    shortened, dropped = drop_oldest_turns(conv, "new message", count, limit, reserve=10)
    assert dropped == 4 and shortened is not None
    assert [t.user for t in shortened.turns] == [t.user for t in conv.turns[4:]]
    assert shortened.id != conv.id and shortened.system_prompt == conv.system_prompt
    assert shortened.title == "long talk (continued)"
    assert len(conv.turns) == 10  # the original is untouched
    shortened.turns[0].answer = "changed"
    assert conv.turns[4].answer == "answer"  # a copy, not shared turns


def test_drop_oldest_turns_when_nothing_helps() -> None:
    count = ScriptedBackend().count_tokens
    shortened, dropped = drop_oldest_turns(conversation_of(3), "word " * 100, count, 50, reserve=1)
    assert shortened is None and dropped == 3


def test_generation_reserve() -> None:
    assert generation_reserve(3000, 32000) == 3000
    assert generation_reserve(3000, 400) == 100  # a quarter of a tiny window
