"""Placeholder for the conversation history browser (the next issue builds it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static

STUB_TEXT = """\
History — not built yet (this screen is a stub).

The conversation browser comes in the next version. Until then, from a shell:

  reasonchat list                  saved conversations, newest first
  reasonchat list --search WORDS   only those that mention WORDS
  reasonchat chat --continue ID    open one here again

Press Esc to go back."""


class HistoryStubScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back", id="history.back")]

    def compose(self) -> ComposeResult:
        with Vertical(id="history-stub"):
            yield Static(STUB_TEXT, markup=False)
        yield Footer()
