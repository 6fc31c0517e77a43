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

from reasonchat.conversation import DONE_STOPS, STAGES, Conversation, Stage, StageStats, Turn
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
    # The stage's text it goes on from ("think more": the reasoning so far); the chunks that follow
    # come after it.
    prefix: str = ""


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
    text: str  # the stage's whole text, a resumed stage's prefix included
    stats: StageStats | None  # None only for a replayed stage saved without stats (an import)


TurnEvent = StageStarted | TextChunk | StageFinished

# (stage, resumed): which generations a run makes, in order; resumed: stage 1 goes on from the reasoning
# so far ("think more") instead of starting anew.
_Plan = tuple[tuple[Stage, bool], ...]


class TurnRunner:
    """Two-stage generation for the last turn of a conversation, cancellable from any thread, and the
    stage operations between and inside the stages: answer now, think more, answer again."""

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
        self._answer_now = threading.Event()
        # The stage in progress and the event that stops it alone: "answer now" must end the reasoning
        # without touching the answer that follows it. Guarded by the lock, so neither a cancel nor an
        # "answer now" lands on a stage that is being set up.
        self._lock = threading.Lock()
        self._stage: Stage | None = None
        self._stage_stop: threading.Event | None = None

    def cancel(self) -> None:
        """Cancel the running turn, or the next one if it has not started yet (no cancel is lost)."""
        self._cancel.set()
        with self._lock:
            if self._stage_stop is not None:
                self._stage_stop.set()
        self.backend.cancel()

    def answer_now(self) -> bool:
        """End the streaming reasoning where it is and answer from it (stop reason ``answer_now``).
        False, and nothing happens, when no reasoning is being generated.

        Only the stage's own event is set, never ``backend.cancel()``: that could reach the answer if
        it started meanwhile. Each backend watches the event (the HTTP one closes its stream on it)."""
        with self._lock:
            if self._stage != "reasoning" or self._stage_stop is None:
                return False
            self._answer_now.set()
            self._stage_stop.set()
            return True

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
        stats; the answer stage then does not run. A reasoning cut by its budget or by "answer now" is
        answered all the same. A stage already present (a retried turn whose reasoning finished, a
        reasoning the user wrote) is not generated again. A reasoning budget of 0 means no reasoning:
        an empty reasoning turn (source ``none``), then the answer.

        Raises ``ContextOverflow`` when a prompt does not fit: for the reasoning stage the turn is left
        untouched; for the answer stage the reasoning is kept and the answer's stats record the error.
        """
        turn = conversation.turns[-1]
        if turn.reasoning is None and self.settings.budget("reasoning") == 0:
            turn.reasoning, turn.reasoning_source = "", "none"
        plan = tuple(
            (stage, False)
            for stage in STAGES
            if not (turn.text(stage) is not None and _finished(turn.stats(stage)))
        )
        return self._generate(conversation, plan, on_event)

    def think_more(
        self,
        conversation: Conversation,
        on_event: Callable[[TurnEvent], None] | None = None,
    ) -> Turn:
        """Go on with the last turn's reasoning from where it stopped, for another reasoning budget,
        then answer again. The prompt is stage 1's plus the reasoning so far, left open
        (``Conversation.continuation_prompt``), so a KV cache holds all but the new tokens.

        The reasoning's stats then describe the continuation (its prompt holds the old reasoning, its
        new tokens are the added ones); its chunks go on after the old ones, so a replay plays it all.
        """
        return self._generate(conversation, (("reasoning", True), ("answer", False)), on_event)

    def answer(
        self,
        conversation: Conversation,
        on_event: Callable[[TurnEvent], None] | None = None,
    ) -> Turn:
        """Generate the last turn's answer again from its reasoning as it is now."""
        return self._generate(conversation, (("answer", False),), on_event)

    def _generate(
        self, conversation: Conversation, plan: _Plan, on_event: Callable[[TurnEvent], None] | None
    ) -> Turn:
        emit = on_event or (lambda event: None)
        index = len(conversation.turns) - 1
        turn = conversation.turns[index]
        try:
            for stage, resumed in plan:
                if self._cancel.is_set():
                    # Cancelled before this stage began: record it as cancelled, generate nothing.
                    self._finish(turn, index, stage, "", StageStats(stop_reason="cancelled"), emit)
                    break
                stats = self._run_stage(conversation, index, stage, resumed, emit)
                conversation.touch()
                if stats.stop_reason not in DONE_STOPS:
                    break
        finally:
            # Cleared at the end, not the start: a cancel that lands before the run begins still counts.
            with self._lock:
                self._stage = self._stage_stop = None
                self._answer_now.clear()
            self._cancel.clear()
        return turn

    def _run_stage(
        self,
        conversation: Conversation,
        index: int,
        stage: Stage,
        resumed: bool,
        emit: Callable[[TurnEvent], None],
    ) -> StageStats:
        turn = conversation.turns[index]
        stop = threading.Event()
        with self._lock:
            self._stage, self._stage_stop = stage, stop
            if self._cancel.is_set():
                stop.set()  # a cancel between the check in _generate and here
        prefix = (turn.reasoning or "") if resumed else ""
        earlier = list(turn.reasoning_stats.chunks) if resumed and turn.reasoning_stats else []
        request = StageRequest(
            conversation_id=conversation.id,
            stage=stage,
            prompt=(
                conversation.continuation_prompt(index)
                if resumed
                else conversation.stage_prompt(index, stage)
            ),
            settings=self.settings,
            context_limit=self.context_limit,
            cancel=stop,
        )
        text = prefix
        # A resumed stage's chunks go on from the old ones' last time, so a replay plays one stream.
        started = time.perf_counter() - (earlier[-1][0] if earlier else 0.0)
        try:
            stream = self.backend.stream(request)
        except ContextOverflow as err:
            if stage == "answer":  # the reasoning is kept; the answer records why it is missing
                stats = StageStats(prompt_tokens=err.prompt_tokens, stop_reason="error", error=str(err))
                self._finish(turn, index, stage, text, stats, emit)
            raise
        stats = stream.stats
        stats.chunks[:0] = earlier
        self._set(turn, stage, text, stats)
        emit(
            StageStarted(
                index, stage, stats.prompt_tokens, stats.cached_tokens, self.context_limit, prefix
            )
        )
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
            stats.stop_reason = "cancelled" if stop.is_set() else "eos"
        if stats.stop_reason == "cancelled" and self._answer_now.is_set() and not self._cancel.is_set():
            stats.stop_reason = "answer_now"
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
    # Imported histories and reasonings the user wrote have text without stats: those stages count as
    # done.
    return stats is None or stats.stop_reason in DONE_STOPS
