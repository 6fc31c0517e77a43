"""The replay clock on a fake wall clock: speeds, pause and resume, speed changes, jumps, waits."""

from __future__ import annotations

import pytest

from reasonchat.replay import (
    SPEED_CYCLE,
    ReplayClock,
    next_speed,
    parse_speed,
    speed_label,
)


class FakeTime:
    """A wall clock that moves only when told to."""

    def __init__(self, start: float = 100.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def now() -> FakeTime:
    return FakeTime()


@pytest.mark.parametrize("speed", [1.0, 2.0, 4.0, 0.5])
def test_position_moves_at_the_speed(now: FakeTime, speed: float) -> None:
    clock = ReplayClock(speed, now=now)
    assert clock.position() == 0.0, "the clock starts at the start, wherever the wall clock is"
    now.advance(1.5)
    assert clock.position() == pytest.approx(1.5 * speed)
    now.advance(0.5)
    assert clock.position() == pytest.approx(2.0 * speed)


def test_pause_holds_the_position_and_resume_continues_from_it(now: FakeTime) -> None:
    clock = ReplayClock(2.0, now=now)
    now.advance(1.0)
    clock.pause()
    assert clock.paused and clock.position() == pytest.approx(2.0)
    now.advance(30.0)
    assert clock.position() == pytest.approx(2.0), "a paused replay does not move"
    clock.resume()
    assert not clock.paused and clock.position() == pytest.approx(2.0), "resuming does not jump"
    now.advance(0.25)
    assert clock.position() == pytest.approx(2.5)


def test_pausing_twice_is_the_same_as_once(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(1.0)
    clock.pause()
    now.advance(5.0)
    clock.pause()
    now.advance(5.0)
    clock.resume()
    now.advance(1.0)
    assert clock.position() == pytest.approx(2.0)


def test_resuming_a_running_clock_changes_nothing(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(3.0)
    clock.resume()  # not paused: nothing to resume
    assert clock.position() == pytest.approx(3.0)


def test_a_speed_change_never_moves_the_position_by_itself(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(3.0)
    clock.set_speed(4.0)
    assert clock.position() == pytest.approx(3.0)
    now.advance(1.0)
    assert clock.position() == pytest.approx(7.0), "from the change on, at the new speed"
    clock.set_speed(1.0)
    assert clock.position() == pytest.approx(7.0)
    now.advance(2.0)
    assert clock.position() == pytest.approx(9.0)


def test_a_speed_change_while_paused_holds_and_applies_after_resume(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(2.0)
    clock.pause()
    now.advance(10.0)
    clock.set_speed(2.0)
    assert clock.paused and clock.position() == pytest.approx(2.0)
    now.advance(10.0)
    assert clock.position() == pytest.approx(2.0)
    clock.resume()
    now.advance(1.0)
    assert clock.position() == pytest.approx(4.0)


@pytest.mark.parametrize("speed", [0.0, -1.0])
def test_a_clock_runs_at_a_positive_speed(now: FakeTime, speed: float) -> None:
    with pytest.raises(ValueError):
        ReplayClock(speed, now=now)
    clock = ReplayClock(1.0, now=now)
    now.advance(1.0)
    with pytest.raises(ValueError):
        clock.set_speed(speed)
    assert clock.speed == 1.0 and clock.position() == pytest.approx(1.0), "a refused change changes nothing"


def test_jump_goes_forward_and_continues_from_there(now: FakeTime) -> None:
    clock = ReplayClock(2.0, now=now)
    now.advance(1.0)
    clock.jump(10.0)
    assert clock.position() == pytest.approx(10.0)
    now.advance(0.5)
    assert clock.position() == pytest.approx(11.0)


def test_jump_never_goes_backwards(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(5.0)
    clock.jump(2.0)
    assert clock.position() == pytest.approx(5.0)
    now.advance(1.0)
    assert clock.position() == pytest.approx(6.0), "and the clock keeps running from where it was"


def test_jump_while_paused_moves_but_stays_paused(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(1.0)
    clock.pause()
    clock.jump(4.0)
    now.advance(3.0)
    assert clock.paused and clock.position() == pytest.approx(4.0)
    clock.jump(3.0)
    assert clock.position() == pytest.approx(4.0)
    clock.resume()
    now.advance(1.0)
    assert clock.position() == pytest.approx(5.0)


def test_seconds_until_is_wall_time_at_the_current_speed(now: FakeTime) -> None:
    clock = ReplayClock(1.0, now=now)
    now.advance(1.0)
    assert clock.seconds_until(3.0) == pytest.approx(2.0)
    clock.set_speed(4.0)
    assert clock.seconds_until(3.0) == pytest.approx(0.5)
    now.advance(0.5)
    assert clock.seconds_until(3.0) == 0.0
    now.advance(10.0)
    assert clock.seconds_until(3.0) == 0.0, "a moment already passed is due now, never negative"


def test_seconds_until_is_none_while_paused(now: FakeTime) -> None:
    clock = ReplayClock(2.0, now=now)
    clock.pause()
    assert clock.seconds_until(5.0) is None
    assert clock.seconds_until(0.0) is None
    clock.resume()
    assert clock.seconds_until(5.0) == pytest.approx(2.5)


def test_the_default_clock_is_the_monotonic_one() -> None:
    clock = ReplayClock()
    first = clock.position()
    assert 0.0 <= first <= clock.position()


def test_next_speed_steps_through_the_cycle_and_wraps() -> None:
    assert SPEED_CYCLE == (1.0, 2.0, 4.0)
    assert [next_speed(s) for s in SPEED_CYCLE] == [2.0, 4.0, 1.0]
    assert next_speed(0.0) == 1.0, "from instant, the slowest"
    assert next_speed(3.0) == 4.0
    assert next_speed(8.0) == 1.0


def test_speed_label() -> None:
    assert [speed_label(s) for s in (1.0, 2.0, 4.0, 0.5, 0.0)] == ["1×", "2×", "4×", "0.5×", "instant"]


def test_parse_speed_reads_what_the_command_line_offers() -> None:
    assert [parse_speed(s) for s in ("1", "2", "4", " Instant ")] == [1.0, 2.0, 4.0, 0.0]
    with pytest.raises(ValueError, match="unknown replay speed '3'"):
        parse_speed("3")
