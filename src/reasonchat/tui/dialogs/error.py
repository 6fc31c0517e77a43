"""A failure (loading, generating, saving) with its message; Retry or Close."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ErrorDialog(ModalScreen[bool]):
    """Dismissed with ``True`` when the user asks to retry."""

    BINDINGS = [
        Binding("r", "retry", "Retry", id="error.retry"),
        Binding("escape", "close", "Close", id="error.close"),
    ]

    def __init__(self, title: str, message: str, hint: str) -> None:
        super().__init__(classes="dialog")
        self.title_text = title
        self.message = message
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box -error") as box:
            box.border_title = self.title_text
            yield Static(self.message, markup=False, classes="dialog-message")
            yield Static(self.hint, markup=False, classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Retry (r)", id="retry", variant="primary")
                yield Button("Close (esc)", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "retry")

    def action_retry(self) -> None:
        self.dismiss(True)

    def action_close(self) -> None:
        self.dismiss(False)
