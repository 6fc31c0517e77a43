"""A reasoning in an editor: the last turn's, to re-answer from, or the user's own for a message
about to be sent. Esc discards it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static, TextArea

from reasonchat.sanitize import for_screen


class EditReasoningDialog(ModalScreen[str | None]):
    """Dismissed with the reasoning to answer from, or ``None`` (discarded)."""

    BINDINGS = [
        Binding("escape", "cancel", "Discard", id="edit_reasoning.cancel"),
        # Enter inserts a line (a reasoning has many), so saving needs a key of its own.
        Binding("ctrl+s", "save", "Save", id="edit_reasoning.save"),
    ]

    def __init__(
        self,
        reasoning: str,
        *,
        title: str = "Edit reasoning",
        save_label: str = "Re-answer",
        hint: str = "The answer is generated again from this text; the reasoning as it was stays a version of the turn.",
    ) -> None:
        super().__init__(classes="dialog")
        self.original = reasoning
        self.title_text, self.save_label, self.hint = title, save_label, hint
        # The editor shows what a pane would (model text made safe for the terminal).
        self.shown = for_screen(reasoning)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box", id="edit-reasoning-box") as box:
            box.border_title = self.title_text
            yield TextArea(self.shown, id="edit-reasoning-text", soft_wrap=True, tab_behavior="focus")
            yield Static(self.hint, classes="dialog-hint", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.save_label} (ctrl+s)", id="save", variant="primary")
                yield Button("Discard (esc)", id="cancel")

    def on_mount(self) -> None:
        editor = self.query_one(TextArea)
        editor.focus()
        editor.move_cursor(editor.document.end)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_save(self) -> None:
        text = self.query_one(TextArea).text
        # Untouched: the reasoning as it was, not its screen-safe copy (which would count as an edit).
        self.dismiss(self.original if text == self.shown else text)
