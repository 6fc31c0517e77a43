"""Runs one user turn through a backend: the reasoning stage, then the answer stage.

The runner owns the protocol (which prompt each stage gets), cancellation, the chunk timing recorded
for replay, and the events a caller (the CLI, the Textual worker) turns into output. It runs in the
caller's thread; the Textual worker runs it in a thread of its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reasonchat.conversation import STAGES, Conversation, Stage, StageStats, Turn
from reasonchat.engine.protocol import (
    Backend,
    ContextOverflow,
    StageRequest,
)
from reasonchat.errors import ReasonchatError
from reasonchat.settings import GenerationSettings
from reasonchat.template import DEFAULT_CONTEXT_LIMIT
from reasonchat.unicode_text import StreamValidator, valid_text


@dataclass(frozen=True)
class StageStarted:
    turn_index: int
    stage: Stage
    prompt_tokens: int
    cached_tokens: int
    context_limit: int


@dataclass(frozen=True)
class TextChunk:
    turn_index: int
    stage: Stage
    text: str
    new_tokens: int
    elapsed_s: float


@dataclass(frozen=True)
class StageFinished:
    turn_index: int
    stage: Stage
    text: str
    stats: StageStats | None  # None only for a replayed stage saved without stats (an import)


TurnEvent = StageStarted | TextChunk | StageFinished


class TurnRunner:
    """Two-stage generation for the last turn of a conversation, cancellable from any thread."""

    def __init__(
        self,
        backend: Backend,
        settings: GenerationSettings | None = None,
        context_limit: int = DEFAULT_CONTEXT_LIMIT,
    ) -> None:
        self.backend = backend
        self.settings = settings or GenerationSettings()
        self.context_limit = context_limit
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Cancel the running turn, or the next one if it has not started yet (no cancel is lost)."""
        self._cancel.set()
        self.backend.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def run(
        self,
        conversation: Conversation,
        on_event: Callable[[TurnEvent], None] | None = None,
    ) -> Turn:
        """Generate reasoning then answer for ``conversation.turns[-1]``, filling it in place.

        A stage that is cancelled or fails keeps its partial text and ends with that stop reason in its
        stats; the answer stage then does not run. A stage already present (a retried turn whose
        reasoning finished) is not generated again.

        Raises ``ContextOverflow`` when a prompt does not fit: for the reasoning stage the turn is left
        untouched; for the answer stage the reasoning is kept and the answer's stats record the error.
        """
        emit = on_event or (lambda event: None)
        index = len(conversation.turns) - 1
        turn = conversation.turns[index]
        try:
            for stage in STAGES:
                if turn.text(stage) is not None and _finished(turn.stats(stage)):
                    continue
                if self._cancel.is_set():
                    # Cancelled before this stage began: record it as cancelled, generate nothing.
                    self._finish(turn, index, stage, "", StageStats(stop_reason="cancelled"), emit)
                    break
                stats = self._run_stage(conversation, index, stage, emit)
                conversation.touch()
                if stats.stop_reason not in ("eos", "max_new_tokens"):
                    break
        finally:
            # Cleared at the end, not the start: a cancel that lands before the run begins still counts.
            self._cancel.clear()
        return turn

    def _run_stage(
        self, conversation: Conversation, index: int, stage: Stage, emit: Callable[[TurnEvent], None]
    ) -> StageStats:
        turn = conversation.turns[index]
        request = StageRequest(
            conversation_id=conversation.id,
            stage=stage,
            prompt=conversation.stage_prompt(index, stage),
            settings=self.settings,
            context_limit=self.context_limit,
            cancel=self._cancel,
        )
        text = ""
        started = time.perf_counter()
        try:
            stream = self.backend.stream(request)
        except ContextOverflow as err:
            if stage == "answer":  # the reasoning is kept; the answer records why it is missing
                stats = StageStats(prompt_tokens=err.prompt_tokens, stop_reason="error", error=str(err))
                self._finish(turn, index, stage, text, stats, emit)
            raise
        stats = stream.stats
        self._set(turn, stage, text, stats)
        emit(StageStarted(index, stage, stats.prompt_tokens, stats.cached_tokens, self.context_limit))
        # Every backend's text passes here: made valid once, so saving and printing it cannot fail.
        valid = StreamValidator()
        try:
            for delta in stream:
                text = self._add(turn, index, stage, text, valid.feed(delta), stats, started, emit)
        except ReasonchatError as err:
            stats.stop_reason = "error"
            stats.error = valid_text(str(err))  # it may quote the server
        except Exception as err:  # a backend bug must not lose the partial turn
            stats.stop_reason = "error"
            stats.error = valid_text(f"{type(err).__name__}: {err}")
        if held := valid.flush():
            text = self._add(turn, index, stage, text, held, stats, started, emit)
        if stats.stop_reason is None:
            stats.stop_reason = "cancelled" if self._cancel.is_set() else "eos"
        return self._finish(turn, index, stage, text, stats, emit)

    def _add(
        self,
        turn: Turn,
        index: int,
        stage: Stage,
        text: str,
        delta: str,
        stats: StageStats,
        started: float,
        emit: Callable[[TurnEvent], None],
    ) -> str:
        text += delta
        elapsed = time.perf_counter() - started
        stats.chunks.append((round(elapsed, 4), len(text)))
        self._set(turn, stage, text, stats)
        emit(TextChunk(index, stage, delta, stats.new_tokens, elapsed))
        return text

    def _finish(
        self,
        turn: Turn,
        index: int,
        stage: Stage,
        text: str,
        stats: StageStats,
        emit: Callable[[TurnEvent], None],
    ) -> StageStats:
        self._set(turn, stage, text, stats)
        emit(StageFinished(index, stage, text, stats))
        return stats

    @staticmethod
    def _set(turn: Turn, stage: Stage, text: str, stats: StageStats) -> None:
        if stage == "reasoning":
            turn.reasoning, turn.reasoning_stats = text, stats
        else:
            turn.answer, turn.answer_stats = text, stats


def _finished(stats: StageStats | None) -> bool:
    # Imported histories have text without stats: those stages count as done.
    return stats is None or stats.stop_reason in ("eos", "max_new_tokens")
