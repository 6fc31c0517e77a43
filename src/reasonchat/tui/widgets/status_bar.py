"""The bottom line: the model's state on the left, the token meter on the right."""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Static

from reasonchat.tui.widgets.token_meter import TokenMeter

TICK_S = 0.5


class ModelStatus(Static):
    """Loading (what, for how long), ready, or failed."""

    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, label: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.label = label
        self.state = "loading"
        self.detail = ""
        self._started = 0.0
        self._timer: Timer | None = None

    def loading(self) -> None:
        self._set("loading", "")
        self._started = self.clock()
        if self._timer is None:
            self._timer = self.set_interval(TICK_S, self.refresh)

    def progress(self, detail: str) -> None:
        self.detail = detail
        self.refresh()

    def ready(self) -> None:
        self._set("ready", "")

    def failed(self) -> None:
        self._set("failed", "")

    def _set(self, state: str, detail: str) -> None:
        self.state, self.detail = state, detail
        if state != "loading" and self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.set_class(state == "failed", "-failed")
        self.refresh()

    def render(self) -> str:
        if self.state == "loading":
            elapsed = self.clock() - self._started
            detail = f" · {self.detail}" if self.detail else ""
            return f"◌ loading {self.label} {elapsed:.0f} s{detail}"
        if self.state == "failed":
            return "✗ model failed to load · ctrl+r retries"
        return f"● {self.label}"


class StatusBar(Horizontal):
    def __init__(self, model_label: str, context_limit: int, budget: str = "") -> None:
        super().__init__(id="status-bar")
        self._model_label = model_label
        self._context_limit = context_limit
        self._budget = budget

    def compose(self) -> ComposeResult:
        yield ModelStatus(self._model_label, id="model-status")
        budget = Static(self._budget, id="reasoning-budget", markup=False)
        budget.display = bool(self._budget)
        yield budget
        yield TokenMeter(self._context_limit, id="token-meter")

    @property
    def budget(self) -> str:
        """The reasoning budget the user chose, in words; empty: the default, and nothing shown."""
        return self._budget

    @budget.setter
    def budget(self, label: str) -> None:
        self._budget = label
        widget = self.query_one("#reasoning-budget", Static)
        widget.update(label)
        widget.display = bool(label)
