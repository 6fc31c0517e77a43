"""The timeline of a saved conversation, for replay: which text appears when.

Pure (no torch, no textual): the replay screen walks the timeline, the CLI and tests can inspect it.
Each stage re-streams its recorded chunks at their recorded offsets; a stage saved without timing
(imported histories, or older records) streams at a steady rate instead.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reasonchat.conversation import STAGES, Conversation, Stage, StageStats, Turn

SPEEDS = {"1": 1.0, "2": 2.0, "4": 4.0, "instant": 0.0}
# What the speed key steps through while a replay plays (instant is a jump to the end instead).
SPEED_CYCLE = (1.0, 2.0, 4.0)
TURN_GAP_S = 0.6  # between one turn's answer and the next question
STEADY_CHARS_PER_S = 160.0  # about 40 tokens/s: a brisk but readable stream
_WORD = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class ReplayEvent:
    """``text`` appears at ``at_s`` seconds after the replay started (at speed 1).

    ``stage`` None is the user's message; otherwise a delta to append to that stage's pane.
    """

    at_s: float
    turn_index: int
    stage: Stage | None
    text: str
    final: bool = False  # the last event of its stage (or the user message): render in full
    # Where the user stepped in, on the event it happened at (``step_in``): None for the model alone.
    step: str | None = None


def step_in(turn: Turn) -> str | None:
    """What the user did to ``turn``'s active version, said where the replay reaches it (the end of
    the reasoning, where the answer was started from), or None if the model ran on its own."""
    current = turn.current
    if current.source == "none":
        return "you skipped the reasoning"
    if current.source == "user":
        return "you wrote this reasoning"
    if current.source == "edited":
        return "you edited this reasoning (the model's own is kept)"
    if current.stats is not None and current.stats.stop_reason == "answer_now":
        return "you stopped the reasoning here and asked for the answer"
    text = current.reasoning or ""
    if any(v is not current and v.reasoning and text.startswith(v.reasoning) and text != v.reasoning
           for v in turn.variants):  # fmt: skip
        return "you asked the model to think more"
    if current.active_answer > 0:
        return "you asked for a new answer"
    if turn.active > 0:
        return "you asked for a new reasoning"
    return None


def parse_speed(text: str) -> float:
    """``1``, ``2``, ``4`` or ``instant`` (0.0)."""
    try:
        return SPEEDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown replay speed {text!r} (choose from {', '.join(SPEEDS)})") from None


def recorded_chunks(text: str, stats: StageStats | None) -> list[tuple[float, str]] | None:
    """``(offset_s, delta)`` pairs from the stage's recorded timing, or None if it has none usable."""
    if stats is None or not stats.chunks:
        return None
    out, previous_end, previous_t = [], 0, 0.0
    for t, end in stats.chunks:
        if end < previous_end or end > len(text) or not previous_t <= t < math.inf:
            return None  # timing that does not fit the text (edited, truncated): do not trust it
        if end > previous_end:
            out.append((t, text[previous_end:end]))
        previous_end, previous_t = end, t
    if previous_end < len(text):  # text after the last chunk (a final flush)
        out.append((previous_t, text[previous_end:]))
    return out


def steady_chunks(text: str) -> list[tuple[float, str]]:
    out, position = [], 0
    for match in _WORD.finditer(text):
        position += len(match.group())
        out.append((position / STEADY_CHARS_PER_S, match.group()))
    return out


def turn_events(conversation: Conversation, index: int, start_s: float = 0.0) -> list[ReplayEvent]:
    """The events of turn ``index``, its question at ``start_s``: a player needs one turn at a time,
    so a long conversation starts playing without building its whole timeline first."""
    turn = conversation.turns[index]
    clock = start_s
    events = [ReplayEvent(clock, index, None, turn.user, final=True)]
    for stage in STAGES:
        text = turn.text(stage)
        if text is None:
            continue
        step = step_in(turn) if stage == "reasoning" else None
        chunks = recorded_chunks(text, turn.stats(stage)) or steady_chunks(text)
        if not chunks:
            events.append(ReplayEvent(clock, index, stage, "", final=True, step=step))
            continue
        for position, (offset, delta) in enumerate(chunks):
            last = position == len(chunks) - 1
            events.append(ReplayEvent(clock + offset, index, stage, delta, final=last, step=step if last else None))
        clock += chunks[-1][0]
    return events


def timeline(conversation: Conversation, start_turn: int = 0) -> Iterator[ReplayEvent]:
    """Every event of the conversation from ``start_turn`` on, in order, at speed 1."""
    clock = 0.0
    for index in range(start_turn, len(conversation.turns)):
        if index > start_turn:
            clock += TURN_GAP_S
        events = turn_events(conversation, index, clock)
        yield from events
        clock = events[-1].at_s


def duration(conversation: Conversation) -> float:
    """Seconds a replay at speed 1 takes."""
    last = 0.0
    for event in timeline(conversation):
        last = event.at_s
    return last


def speed_label(speed: float) -> str:
    return "instant" if speed == 0 else f"{speed:g}×"


def next_speed(speed: float) -> float:
    """The speed after ``speed`` in ``SPEED_CYCLE``, wrapping round."""
    faster = [s for s in SPEED_CYCLE if s > speed]
    return faster[0] if faster else SPEED_CYCLE[0]


class ReplayClock:
    """Where a replay is on its timeline (in seconds at speed 1), under pause, speed changes and jumps.

    Position is kept as an anchor (position, wall time) re-taken at every change, so a speed change
    never moves the replay backwards or forwards by itself.
    """

    def __init__(self, speed: float = 1.0, now: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("a replay clock runs at a positive speed (instant is not a clock)")
        self._now = now
        self.speed = speed
        self.paused = False
        self._anchor_position = 0.0
        self._anchor_time = now()

    def position(self) -> float:
        if self.paused:
            return self._anchor_position
        return self._anchor_position + (self._now() - self._anchor_time) * self.speed

    def seconds_until(self, at_s: float) -> float | None:
        """Wall-clock seconds until the timeline reaches ``at_s`` (0 if it has); None while paused."""
        if self.paused:
            return None
        return max(0.0, (at_s - self.position()) / self.speed)

    def _reanchor(self) -> None:
        self._anchor_position, self._anchor_time = self.position(), self._now()

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("a replay clock runs at a positive speed")
        self._reanchor()
        self.speed = speed

    def pause(self) -> None:
        self._reanchor()
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._anchor_time = self._now()
            self.paused = False

    def jump(self, position: float) -> None:
        """Continue from ``position`` (a skip): never backwards."""
        self._anchor_position = max(position, self.position())
        self._anchor_time = self._now()
