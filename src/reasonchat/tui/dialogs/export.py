"""Export a conversation to a file: Markdown to read, JSON to replay anywhere, the card's history list."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from reasonchat import transfer
from reasonchat.conversation import Conversation
from reasonchat.errors import UserError

FORMAT_LABELS = {
    "markdown": "Markdown (to read)",
    "json": "JSON (the full record: replays anywhere)",
    "history": "History (the model card's role/content list)",
}


def default_path(conv: Conversation, format_name: str, directory: Path | None = None) -> Path:
    extension = transfer.EXPORTERS[format_name][1]
    return (directory or Path.cwd()) / f"reasonchat-{conv.id[:8]}{extension}"


class ExportDialog(ModalScreen[Path | None]):
    """Writes the file itself (atomically, mode 0600), so a bad path is reported here and the dialog
    stays open; dismissed with the path written, or ``None``. An existing file is replaced only when
    Export is pressed a second time for the same path."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="export.cancel")]

    def __init__(self, conversation: Conversation, directory: Path | None = None) -> None:
        super().__init__(classes="dialog")
        self.conversation = conversation
        self.directory = directory
        self.format_name = "markdown"
        self._confirmed_replace: Path | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box") as box:
            box.border_title = "Export conversation"
            with RadioSet(id="export-format"):
                for name, label in FORMAT_LABELS.items():
                    yield RadioButton(label, value=name == self.format_name, name=name)
            yield Label("File")
            path = default_path(self.conversation, self.format_name, self.directory)
            yield Input(str(path), id="export-path")
            yield Static("", id="export-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Export (enter)", id="export", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).focus()

    @property
    def path_input(self) -> Input:
        return self.query_one("#export-path", Input)

    @on(RadioSet.Changed, "#export-format")
    def _format_changed(self, event: RadioSet.Changed) -> None:
        previous = default_path(self.conversation, self.format_name, self.directory)
        self.format_name = event.pressed.name or "markdown"
        if self.path_input.value == str(previous):  # still the suggestion: follow it
            self.path_input.value = str(default_path(self.conversation, self.format_name, self.directory))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._export()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "export":
            self._export()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _error(self, text: str) -> None:
        self.query_one("#export-error", Static).update(text)

    def _export(self) -> None:
        value = self.path_input.value.strip()
        if not value:
            self._error("Give a file name.")
            return
        try:
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = (self.directory or Path.cwd()) / path
            is_dir, exists = path.is_dir(), path.exists()
        except (OSError, RuntimeError) as err:  # ~nosuchuser, a name too long, no permission
            self._error(f"Cannot use {value!r}: {getattr(err, 'strerror', None) or err}")
            return
        if is_dir:
            self._error(f"{path} is a directory: give a file name.")
            return
        if exists and self._confirmed_replace != path:
            self._confirmed_replace = path
            self._error(f"{path.name} already exists: press Export again to replace it.")
            return
        try:
            transfer.write_atomically(path, transfer.export_bytes(self.conversation, self.format_name))
        except UserError as err:
            self._error(str(err))
            return
        self.dismiss(path)
