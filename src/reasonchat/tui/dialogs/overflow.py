"""The context is full: start over, drop old turns, or go back. Never exit, never lose the message."""

from __future__ import annotations

from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from reasonchat.engine.protocol import ContextOverflow

OverflowChoice = Literal["new", "drop", "back"]


def no_room_text(overflow: ContextOverflow, what: str = "The prompt") -> str:
    return (
        f"{what} is {overflow.prompt_tokens:,} tokens, which leaves no room to generate within the "
        f"{overflow.limit:,}-token context limit."
    )


def overflow_text(overflow: ContextOverflow) -> str:
    return no_room_text(
        overflow, "With your message, the prompt" if overflow.stage == "reasoning" else "The answer's prompt"
    )


class OverflowDialog(ModalScreen[OverflowChoice]):
    BINDINGS = [
        Binding("n", "choose('new')", "New conversation", id="overflow.new"),
        Binding("d", "choose('drop')", "Drop oldest turns", id="overflow.drop"),
        Binding("escape,b", "choose('back')", "Go back", id="overflow.back"),
    ]

    def __init__(self, overflow: ContextOverflow) -> None:
        super().__init__(classes="dialog")
        self.overflow = overflow

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog-box") as box:
            box.border_title = "Context limit reached"
            yield Static(overflow_text(self.overflow), markup=False, classes="dialog-message")
            yield Static("Your message is kept. What now?", classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("New conversation (n)", id="new", variant="primary")
                yield Button("Drop oldest turns (d)", id="drop")
                yield Button("Go back (esc)", id="back")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_choose(event.button.id or "back")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)  # type: ignore[arg-type]
