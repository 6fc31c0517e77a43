"""The context meter: ``prompt + reasoning + answer / limit``, or the next prompt's size while typing."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from reasonchat.budget import ContextUsage, Level, level_of


class TokenMeter(Static):
    usage: reactive[ContextUsage] = reactive(ContextUsage(1), layout=True)
    # The reasoning prompt the composer's text would make; None when the composer is empty.
    next_prompt: reactive[int | None] = reactive(None, layout=True)
    # The backend guesses counts from the text length (a server without /tokenize): say so.
    estimated: reactive[bool] = reactive(False, layout=True)

    def __init__(self, limit: int, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.set_reactive(TokenMeter.usage, ContextUsage(limit))

    def render(self) -> str:
        usage = self.usage
        if self.next_prompt is not None:
            tokens = self.next_prompt
            text = f"next prompt {tokens:,} / {usage.limit:,}"
        else:
            tokens = usage.total
            text = f"{usage.prompt:,} + {usage.reasoning:,} + {usage.answer:,} / {usage.limit:,}"
        # Floored, so the figure never reads 70 % before the warning colour does.
        approximately = "~" if self.estimated else ""
        return f"{approximately}{text} ({approximately}{100 * tokens // usage.limit}%)"

    @property
    def level(self) -> Level:
        tokens = self.next_prompt if self.next_prompt is not None else self.usage.total
        return level_of(tokens, self.usage.limit)

    def watch_usage(self) -> None:
        self._show_level()

    def watch_next_prompt(self) -> None:
        self._show_level()

    def _show_level(self) -> None:
        level = self.level
        self.set_class(level == "warning", "-warning")
        self.set_class(level == "error", "-error")
