"""The app's pure pieces: context arithmetic, dropping old turns, the event pipe, clipboard sequences,
and the cold-start promise (no torch before the first frame)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.engine.turn import StageFinished, StageStarted, TextChunk
from reasonchat.errors import UserError
from reasonchat.tui.clipboard import osc52, tmux_passthrough
from reasonchat.tui.context_budget import (
    ContextUsage,
    drop_oldest_turns,
    generation_reserve,
    level_of,
)
from reasonchat.tui.messages import NextPromptCounted, TokensProgress
from reasonchat.tui.worker import TurnEnded, TurnPipe, coalesce, describe


def test_levels_switch_at_70_and_90_percent() -> None:
    assert [level_of(n, 1000) for n in (699, 700, 899, 900, 1200)] == [
        "ok", "warning", "warning", "error", "error",
    ]  # fmt: skip


def test_usage_of_a_saved_turn() -> None:
    turn = Turn("q", "r", "a", StageStats(prompt_tokens=100, new_tokens=20), StageStats(new_tokens=5))
    usage = ContextUsage.of_turn(turn, 32000)
    assert (usage.prompt, usage.reasoning, usage.answer, usage.total) == (100, 20, 5, 125)
    assert ContextUsage.of_turn(Turn("imported", "r", "a"), 32000).total == 0


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


def test_coalesce_merges_consecutive_text_of_one_stage() -> None:
    stats = StageStats()
    batch = [
        StageStarted(0, "reasoning", 5, 0, 100),
        TextChunk(0, "reasoning", "a", 1, 0.1),
        TextChunk(0, "reasoning", "b", 2, 0.2),
        StageFinished(0, "reasoning", "ab", stats),
        TextChunk(0, "answer", "c", 1, 0.3),
        TextChunk(0, "answer", "d", 2, 0.4),
        TurnEnded(),
    ]
    merged = coalesce(batch)
    assert [type(item).__name__ for item in merged] == [
        "StageStarted", "TextChunk", "StageFinished", "TextChunk", "TurnEnded",
    ]  # fmt: skip
    assert (merged[1].text, merged[1].new_tokens) == ("ab", 2)
    assert (merged[3].text, merged[3].new_tokens) == ("cd", 2)


async def test_the_pipe_never_blocks_the_producer_and_keeps_order() -> None:
    pipe = TurnPipe(asyncio.get_running_loop())
    count = 20000

    def produce() -> float:
        started = time.perf_counter()
        for i in range(count):
            pipe.put(TextChunk(0, "answer", f"{i} ", i + 1, 0.0))
        pipe.put(TurnEnded())
        return time.perf_counter() - started

    result: list[float] = []
    thread = threading.Thread(target=lambda: result.append(produce()))
    thread.start()
    thread.join(10)  # the consumer has not run a single step yet: put() cannot be waiting for it
    assert result and not thread.is_alive()
    received: list[str] = []
    batches = 0
    async for batch in pipe.batches():
        batches += 1
        received.extend(item.text for item in batch if isinstance(item, TextChunk))
    assert received == [f"{i} " for i in range(count)]
    assert batches < count  # drained in batches, not one wake-up per token


def test_a_newer_count_of_the_same_stage_supersedes_a_queued_one() -> None:
    queued = TokensProgress(3, "reasoning", 100, 5)
    assert queued.can_replace(TokensProgress(3, "reasoning", 100, 6))
    # The last count of a stage, or of an older run, is never dropped for another's.
    assert not queued.can_replace(TokensProgress(3, "answer", 120, 1))
    assert not queued.can_replace(TokensProgress(4, "reasoning", 90, 1))
    assert NextPromptCounted("a", 1).can_replace(NextPromptCounted("ab", 2))


def test_describe_errors_for_a_dialog() -> None:
    assert describe(UserError("model path not found: /x")) == "model path not found: /x"
    assert describe(RuntimeError("CUDA out of memory.\nTried to allocate")) == (
        "RuntimeError: CUDA out of memory."
    )
    assert describe(KeyError()) == "KeyError"


def test_clipboard_sequences() -> None:
    assert osc52("hé") == "\x1b]52;c;aMOp\x07"
    assert tmux_passthrough("\x1b]52;c;aMOp\x07") == "\x1bPtmux;\x1b\x1b]52;c;aMOp\x07\x1b\\"


def test_importing_the_app_does_not_import_torch() -> None:
    code = (
        "import sys; import reasonchat.tui.app, reasonchat.cli.app_commands; "
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
