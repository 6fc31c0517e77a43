"""When Python's cycle collector may make a full pass, so that it never stalls a streaming pane.

A full pass walks every object the collector tracks, holding the UI thread: with a long stage's
Markdown widgets that took 60-160 ms, four times during one 3,000-token stream (2 shared cores),
and no key was handled and no frame painted meanwhile. Textual pauses the collector during smooth
scrolls (``App.PAUSE_GC_ON_SCROLL``) for the same reason. Here:

- Objects that live as long as the process (modules, classes, the stylesheet, a loaded model) are
  frozen once they exist (``freeze_long_lived``), so no later pass walks them again.
- While a stage streams (``hold``/``release``, one holder a pane), full passes are held off. The
  young generations are still collected, so what each frame leaves behind is still freed.
- The pass that was held off runs once nothing streams and the app has had no input for
  ``IDLE_S`` (``note_input``), from a timer on the loop: not while the user types.
- A hold lapses after ``HOLD_MAX_S`` of streaming (the collector's own thresholds come back until
  nothing streams), so what only a full pass frees cannot pile up through a long, slow generation.
  A fast stream, where a pass costs most, ends well within it (10,000 tokens took 5 s).

Process-wide, as the collector is. Imports neither textual nor torch.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

# Seconds without input (and with nothing streaming) before a held-off full pass runs.
IDLE_S = 1.0
# Seconds of streaming a hold lasts at most.
HOLD_MAX_S = 15.0
# The oldest generation's threshold while held: far more young collections than a run makes.
_HELD_THRESHOLD = 2**31 - 1

_holders: set[int] = set()
_saved_threshold: tuple[int, int, int] | None = None  # set while full passes are held off
_lapsed = False  # this streaming period's hold has lapsed
_last_input = 0.0
_idle_timer: asyncio.TimerHandle | None = None
_lapse_timer: asyncio.TimerHandle | None = None
_frozen: set[str] = set()


def hold(holder: object) -> None:
    """No full pass until every holder has released and the app has been idle for ``IDLE_S`` (or
    the hold has lasted ``HOLD_MAX_S``)."""
    global _saved_threshold, _lapsed, _idle_timer, _lapse_timer
    _idle_timer = _cancel(_idle_timer)
    if not _holders:
        _lapsed = False  # a new streaming period
    if not _lapsed:
        if _saved_threshold is None:
            _saved_threshold = gc.get_threshold()
            young, middle, _ = _saved_threshold
            gc.set_threshold(young, middle, _HELD_THRESHOLD)
        if _lapse_timer is None:
            _lapse_timer = _later(HOLD_MAX_S, _lapse)
    _holders.add(id(holder))


def release(holder: object) -> None:
    """``holder`` no longer streams; the last one to release arms the idle pass."""
    global _lapse_timer, _idle_timer
    _holders.discard(id(holder))
    if _holders:
        return
    _lapse_timer = _cancel(_lapse_timer)
    if _saved_threshold is not None and _idle_timer is None:
        _idle_timer = _later(IDLE_S, _collect_when_idle)
        if _idle_timer is None:  # released outside a loop (the app's teardown): nothing to wait for
            restore()


def note_input() -> None:
    """The user pressed a key or moved the mouse: a held-off pass waits for the next quiet moment."""
    global _last_input
    _last_input = time.monotonic()


def freeze_long_lived(milestone: str) -> None:
    """Everything alive now lives as long as the process (``milestone``: what has just finished
    loading); later passes skip it. Once per milestone and process."""
    if milestone in _frozen:
        return
    _frozen.add(milestone)
    gc.collect()  # what is garbage already must not be frozen with the rest
    gc.freeze()


def restore() -> None:
    """The app is going: the collector's own thresholds again, nothing pending."""
    global _idle_timer, _lapse_timer, _lapsed
    _idle_timer = _cancel(_idle_timer)
    _lapse_timer = _cancel(_lapse_timer)
    _holders.clear()
    _lapsed = False
    _unhold()


def _unhold() -> None:
    global _saved_threshold
    if _saved_threshold is not None:
        gc.set_threshold(*_saved_threshold)
        _saved_threshold = None


def _later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_later(delay, callback)


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()
    return None


def _lapse() -> None:
    global _lapse_timer, _lapsed
    _lapse_timer = None
    _lapsed = True
    _unhold()


def _collect_when_idle() -> None:
    global _idle_timer
    _idle_timer = None
    if _holders or _saved_threshold is None:
        return
    quiet_for = time.monotonic() - _last_input
    if quiet_for < IDLE_S:
        _idle_timer = _later(IDLE_S - quiet_for, _collect_when_idle)
        return
    _unhold()
    gc.collect()
