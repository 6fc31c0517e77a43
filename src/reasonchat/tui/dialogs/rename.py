"""A new title for a saved conversation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

MAX_TITLE = 200


class RenameDialog(ModalScreen[str | None]):
    """Dismissed with the new title (stripped, one line), or ``None``."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="rename.cancel")]

    def __init__(self, title: str) -> None:
        super().__init__(classes="dialog")
        self.current = title

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box") as box:
            box.border_title = "Rename conversation"
            yield Input(self.current, id="rename-title", max_length=MAX_TITLE, select_on_focus=True)
            yield Static("", id="rename-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Rename (enter)", id="rename", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._rename()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "rename":
            self._rename()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _rename(self) -> None:
        title = " ".join(self.query_one("#rename-title", Input).value.split())
        if not title:
            self.query_one("#rename-error", Static).update("A title cannot be empty.")
            return
        self.dismiss(title)
