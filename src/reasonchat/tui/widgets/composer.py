"""The message box: multi-line; Enter sends, Ctrl+J inserts a newline."""

from __future__ import annotations

from dataclasses import dataclass

from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widgets import TextArea


class Composer(TextArea):
    BINDINGS = [
        # Enter is handled in _on_key (TextArea would insert a newline first); the binding puts it in
        # the footer and makes it re-bindable.
        Binding("enter", "send", "Send", id="composer.send"),
        Binding("ctrl+j", "newline", "Newline", id="composer.newline"),
    ]

    @dataclass
    class Submitted(Message):
        composer: Composer
        text: str

        @property
        def control(self) -> Composer:
            return self.composer

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.placeholder = "Ask anything · Enter sends · Ctrl+J new line · Ctrl+P commands"

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.action_send()
            return
        await super()._on_key(event)

    def action_send(self) -> None:
        # Empty or blank input is ignored: nothing to ask.
        if self.text.strip():
            self.post_message(self.Submitted(self, self.text))

    def action_newline(self) -> None:
        self.insert("\n")

    def restore(self, text: str) -> None:
        """Put a message that could not be sent back, in front of anything typed since."""
        current = self.text
        self.load_text(f"{text}\n{current}" if current.strip() else text)
        self.move_cursor(self.document.end)
