"""The app's pure pieces: the event pipe, clipboard sequences, and the cold-start promise (no torch
before the first frame). Context arithmetic is tested in tests/test_budget.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

from reasonchat.conversation import StageStats
from reasonchat.engine.turn import StageFinished, StageStarted, TextChunk
from reasonchat.errors import UserError
from reasonchat.tui.clipboard import osc52, tmux_passthrough
from reasonchat.budget import ContextUsage
from reasonchat.tui.messages import NextPromptCounted
from reasonchat.tui.worker import TurnEnded, TurnPipe, coalesce, describe, track_usage


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
    # Chunks of two stages back to back stay apart.
    apart = coalesce([TextChunk(0, "reasoning", "a", 1, 0.1), TextChunk(0, "answer", "b", 1, 0.2)])
    assert [(item.stage, item.text) for item in apart] == [("reasoning", "a"), ("answer", "b")]


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


def test_the_meter_follows_the_same_events_as_the_panes() -> None:
    usage = ContextUsage(1000)
    events = [
        StageStarted(0, "reasoning", 40, 0, 1000),
        TextChunk(0, "reasoning", "ab", 2, 0.1),
        TextChunk(0, "reasoning", "c", 3, 0.2),
        StageFinished(0, "reasoning", "abc", StageStats(prompt_tokens=40, new_tokens=3)),
        StageStarted(0, "answer", 50, 43, 1000),  # the answer prompt is not counted twice
        TextChunk(0, "answer", "d", 1, 0.3),
    ]
    seen = []
    for event in events:
        usage = track_usage(usage, event)
        seen.append((usage.prompt, usage.reasoning, usage.answer))
    assert seen == [(40, 0, 0), (40, 2, 0), (40, 3, 0), (40, 3, 0), (40, 3, 0), (40, 3, 1)]
    # A replayed stage saved without stats leaves the counts as they were.
    assert track_usage(usage, StageFinished(0, "answer", "d", None)) == usage


def test_a_newer_prompt_count_supersedes_a_queued_one() -> None:
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
