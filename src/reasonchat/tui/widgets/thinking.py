"""The "Thinking…" line shown while the reasoning stage runs (or while a message waits for the model)."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
TICK_S = 0.2


class ThinkingIndicator(Static):
    # A class attribute so snapshot tests can freeze the elapsed time.
    clock: Callable[[], float] = staticmethod(time.monotonic)

    tokens: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._label = ""
        self._started = 0.0
        self._timer: Timer | None = None
        self.display = False

    def start(self, label: str) -> None:
        self._label = label
        self._started = self.clock()
        self.tokens = 0
        self.display = True
        if self._timer is None:
            self._timer = self.set_interval(TICK_S, self.refresh)
        self.refresh()

    def stop(self) -> None:
        self.display = False
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def render(self) -> str:
        elapsed = self.clock() - self._started
        frame = SPINNER[int(elapsed / TICK_S) % len(SPINNER)]
        counted = f" · {self.tokens:,} tokens" if self.tokens else ""
        return f"{frame} {self._label} {elapsed:.1f} s{counted}"
