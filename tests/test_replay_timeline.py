"""The replay timeline: recorded chunk timing, steady rate without it, speeds, robustness."""

from __future__ import annotations

import sys

import pytest

from reasonchat.conversation import Conversation, StageStats
from reasonchat.replay import (
    STEADY_CHARS_PER_S,
    TURN_GAP_S,
    duration,
    parse_speed,
    recorded_chunks,
    timeline,
)


def timed_conversation() -> Conversation:
    conv = Conversation()
    turn = conv.add_turn("What is 2+3?")
    turn.reasoning = "units: 2+3=5"
    turn.reasoning_stats = StageStats(stop_reason="eos", chunks=[(0.5, 6), (0.75, 12)])
    turn.answer = "2 + 3 = 5"
    turn.answer_stats = StageStats(stop_reason="eos", chunks=[(0.25, 9)])
    conv.add_turn("thanks")  # imported later, no timing, no answer yet
    conv.turns[1].reasoning = "polite reply"
    return conv


def test_recorded_timing_is_replayed_as_it_happened() -> None:
    events = list(timeline(timed_conversation()))
    first_turn = [(e.at_s, e.stage, e.text, e.final) for e in events if e.turn_index == 0]
    assert first_turn == [
        (0.0, None, "What is 2+3?", True),
        (0.5, "reasoning", "units:", False),
        (0.75, "reasoning", " 2+3=5", True),
        (1.0, "answer", "2 + 3 = 5", True),
    ]


def test_text_without_timing_streams_at_a_steady_rate() -> None:
    events = [e for e in timeline(timed_conversation()) if e.turn_index == 1]
    assert events[0].at_s == pytest.approx(1.0 + TURN_GAP_S) and events[0].stage is None
    reasoning = [e for e in events if e.stage == "reasoning"]
    assert "".join(e.text for e in reasoning) == "polite reply"
    assert reasoning[-1].final
    assert reasoning[-1].at_s - events[0].at_s == pytest.approx(len("polite reply") / STEADY_CHARS_PER_S)
    assert not any(e.stage == "answer" for e in events), "a stage that never ran is not replayed"


def test_every_stage_text_is_replayed_exactly() -> None:
    conv = timed_conversation()
    for index, turn in enumerate(conv.turns):
        for stage in ("reasoning", "answer"):
            text = "".join(e.text for e in timeline(conv) if e.turn_index == index and e.stage == stage)
            assert text == (turn.text(stage) or "")


@pytest.mark.parametrize(
    "chunks",
    [
        [(0.1, 50)],  # beyond the text
        [(0.1, 5), (0.2, 3)],  # going backwards
        [(0.3, 2), (0.1, 4)],  # time going backwards
    ],
)
def test_timing_that_does_not_fit_the_text_is_ignored(chunks: list[tuple[float, int]]) -> None:
    assert recorded_chunks("hello", StageStats(chunks=chunks)) is None


def test_a_flush_after_the_last_chunk_is_kept() -> None:
    assert recorded_chunks("hello!", StageStats(chunks=[(0.2, 5)])) == [(0.2, "hello"), (0.2, "!")]


def test_starting_at_a_later_turn_and_duration() -> None:
    conv = timed_conversation()
    later = list(timeline(conv, start_turn=1))
    assert later[0].turn_index == 1 and later[0].at_s == 0.0
    assert duration(conv) == pytest.approx(1.0 + TURN_GAP_S + len("polite reply") / STEADY_CHARS_PER_S)


def test_speeds() -> None:
    assert [parse_speed(s) for s in ("1", "2", "4", "instant", " Instant ")] == [1, 2, 4, 0, 0]
    with pytest.raises(ValueError, match="unknown replay speed"):
        parse_speed("3")


def test_the_timeline_needs_neither_torch_nor_textual() -> None:
    import subprocess

    code = "import sys, reasonchat.replay; print(any(m in sys.modules for m in ('torch', 'textual')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_times_that_are_not_finite_seconds_are_no_timing_at_all() -> None:
    """NaN or Infinity (json.loads accepts both) once kept a replay waiting forever."""
    text = "one two"
    for bad in (float("nan"), float("inf"), -1.0):
        stats = StageStats(chunks=[(0.1, 3), (bad, 7)])
        assert recorded_chunks(text, stats) is None


def test_a_file_with_non_finite_chunk_times_is_refused_with_a_clear_message() -> None:
    from reasonchat.errors import UserError
    from reasonchat.transfer import load_bytes, to_json

    conv = timed_conversation()
    for bad in ("NaN", "Infinity", "-1.5"):
        data = to_json(conv).replace('0.75,', f"{bad},", 1).encode()
        assert bad.encode() in data
        with pytest.raises(UserError, match="finite, non-negative seconds"):
            load_bytes(data, "conv.json")


def _turn(**fields) -> "Turn":
    from reasonchat.conversation import Turn

    first = fields.pop("first", None)
    base = dict(user="q", reasoning="r1 r2", answer="a", reasoning_stats=StageStats(stop_reason="eos"))
    turn = Turn(**(base | fields))
    if first is not None:
        turn.keep_first_version(*first)
    return turn


@pytest.mark.parametrize(
    ("fields", "step"),
    [
        ({}, None),
        ({"reasoning_source": "none", "reasoning": ""}, "you skipped the reasoning"),
        ({"reasoning_source": "user"}, "you wrote this reasoning"),
        ({"reasoning_source": "edited", "first": ("x", None)}, "you edited this reasoning (the model's own is kept)"),
        ({"reasoning_stats": StageStats(stop_reason="answer_now")}, "you stopped the reasoning here and asked for the answer"),
        ({"first": ("r1", "old")}, "you asked the model to think more"),
        ({"first": ("r1 r2", "old")}, "you asked for a new answer"),
        ({"first": ("other", "old")}, "you asked for a new reasoning"),
    ],
)
def test_the_timeline_marks_where_the_user_stepped_in(fields, step) -> None:
    from reasonchat.replay import step_in

    conv = Conversation()
    conv.turns.append(_turn(**fields))
    events = list(timeline(conv))
    assert step_in(conv.turns[0]) == step
    marked = [e for e in events if e.step is not None]
    if step is None:
        assert marked == []
    else:
        # Once, on the reasoning's last event: where the answer was started from.
        assert [(e.stage, e.final, e.step) for e in marked] == [("reasoning", True, step)]
