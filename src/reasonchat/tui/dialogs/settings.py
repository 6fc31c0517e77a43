"""Generation settings for this session: max new tokens per stage and temperature."""

from __future__ import annotations

from dataclasses import replace

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from reasonchat.errors import UserError
from reasonchat.settings import GenerationSettings


class SettingsDialog(ModalScreen[GenerationSettings | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="settings.cancel")]

    def __init__(self, settings: GenerationSettings) -> None:
        super().__init__(classes="dialog")
        self.settings = settings

    def compose(self) -> ComposeResult:
        settings = self.settings
        with Vertical(classes="dialog-box") as box:
            box.border_title = "Generation settings"
            yield Label("Max new tokens per stage")
            yield Input(str(settings.max_new_tokens), type="integer", id="max-new-tokens")
            yield Label("Temperature (0 = greedy; empty = the checkpoint's default)")
            temperature = "" if settings.temperature is None else str(settings.temperature)
            yield Input(temperature, type="number", id="temperature")
            yield Static("", id="settings-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Save (enter)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._save()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "save":
            self._save()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _save(self) -> None:
        max_new = self.query_one("#max-new-tokens", Input).value.strip()
        temperature = self.query_one("#temperature", Input).value.strip()
        try:
            settings = replace(
                self.settings,
                max_new_tokens=int(max_new) if max_new else 0,
                temperature=float(temperature) if temperature else None,
            )
        except (UserError, ValueError) as err:
            self.query_one("#settings-error", Static).update(str(err))
            return
        self.dismiss(settings)
