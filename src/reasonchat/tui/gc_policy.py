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
- A process's start (reading a conversation, importing Textual, the first frame) allocates what
  lives as long as the app: no collection runs then (``starting``), until the app has drawn and
  freezes it all. In a 32k-token replay's start a full pass took 17-19 ms and the young ones about
  10 ms more, before anything was on screen.
- A hold lapses after ``HOLD_MAX_S`` of streaming (the collector's own thresholds come back until
  nothing streams), so what only a full pass frees cannot pile up through a long, slow generation.
  A fast stream, where a pass costs most, ends well within it (10,000 tokens took 5 s).

Process-wide, as the collector is. Imports neither textual nor torch.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Seconds without input (and with nothing streaming) before a held-off full pass runs.
IDLE_S = 1.0
# Seconds of streaming a hold lasts at most.
HOLD_MAX_S = 15.0
# The oldest generation's threshold while held: far more young collections than a run makes.
_HELD_THRESHOLD = 2**31 - 1



class _Policy:
    """The collector's state, one per process (as the collector is)."""

    def __init__(self) -> None:
        self.holders: set[int] = set()
        self.saved_threshold: tuple[int, int, int] | None = None  # set while full passes are held off
        self.lapsed = False  # this streaming period's hold has lapsed
        self.last_input = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self.lapse_timer: asyncio.TimerHandle | None = None
        self.frozen: set[str] = set()
        self.paused_at_start = False  # the collector was disabled by ``starting``, not yet enabled

    def hold(self, holder: object) -> None:
        self._cancel_idle()
        if not self.holders:
            self.lapsed = False  # a new streaming period
        if not self.lapsed:
            if self.saved_threshold is None:
                self.saved_threshold = gc.get_threshold()
                young, middle, _ = self.saved_threshold
                gc.set_threshold(young, middle, _HELD_THRESHOLD)
            if self.lapse_timer is None:
                self.lapse_timer = _later(HOLD_MAX_S, self._lapse)
        self.holders.add(id(holder))

    def release(self, holder: object) -> None:
        self.holders.discard(id(holder))
        if self.holders:
            return
        self._cancel_lapse()
        if self.saved_threshold is not None and self.idle_timer is None:
            self.idle_timer = _later(IDLE_S, self._collect_when_idle)
            if self.idle_timer is None:  # released outside a loop (the app's teardown): nothing to wait for
                self.restore()

    def freeze_long_lived(self, milestone: str) -> None:
        if milestone not in self.frozen:
            self.frozen.add(milestone)
            gc.collect()  # what is garbage already must not be frozen with the rest
            gc.freeze()
        self.end_start()

    def end_start(self) -> None:
        if self.paused_at_start:
            self.paused_at_start = False
            gc.enable()

    def restore(self) -> None:
        self._cancel_idle()
        self._cancel_lapse()
        self.holders.clear()
        self.lapsed = False
        self._unhold()
        self.end_start()

    def _unhold(self) -> None:
        if self.saved_threshold is not None:
            gc.set_threshold(*self.saved_threshold)
            self.saved_threshold = None

    def _cancel_idle(self) -> None:
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None

    def _cancel_lapse(self) -> None:
        if self.lapse_timer is not None:
            self.lapse_timer.cancel()
            self.lapse_timer = None

    def _lapse(self) -> None:
        self.lapse_timer = None
        self.lapsed = True
        self._unhold()

    def _collect_when_idle(self) -> None:
        self.idle_timer = None
        if self.holders or self.saved_threshold is None:
            return
        quiet_for = time.monotonic() - self.last_input
        if quiet_for < IDLE_S:
            self.idle_timer = _later(IDLE_S - quiet_for, self._collect_when_idle)
            return
        self._unhold()
        gc.collect()


def _later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_later(delay, callback)


_policy = _Policy()


def hold(holder: object) -> None:
    """No full pass until every holder has released and the app has been idle for ``IDLE_S`` (or
    the hold has lasted ``HOLD_MAX_S``)."""
    _policy.hold(holder)


def release(holder: object) -> None:
    """``holder`` no longer streams; the last one to release arms the idle pass."""
    _policy.release(holder)


def note_input() -> None:
    """The user pressed a key or moved the mouse: a held-off pass waits for the next quiet moment."""
    _policy.last_input = time.monotonic()


def freeze_long_lived(milestone: str) -> None:
    """Everything alive now lives as long as the process (``milestone``: what has just finished
    loading); later passes skip it. Once per milestone and process. Ends ``starting``'s pause."""
    _policy.freeze_long_lived(milestone)


@contextmanager
def starting() -> Iterator[None]:
    """Around an app's whole run: no collection from here until the app freezes what it has loaded
    (``freeze_long_lived("app")``, after its first frame) or the block ends, whichever comes first."""
    if gc.isenabled():
        gc.disable()
        _policy.paused_at_start = True
    try:
        yield
    finally:
        _policy.end_start()


def restore() -> None:
    """The app is going: the collector's own thresholds again, nothing pending."""
    _policy.restore()
