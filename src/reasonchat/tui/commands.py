"""The command palette's chat entries (Ctrl+P): every action of the footer, findable by name."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from reasonchat.tui.screens.chat import ChatScreen

# (title, action on the chat screen, help)
CHAT_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("New conversation", "new_conversation", "Start over with the same system prompt"),
    ("Open history", "open_history", "Saved conversations (a stub in this version)"),
    ("Copy last answer", "copy_answer", "To the clipboard (OSC 52, works over SSH)"),
    ("Copy last reasoning", "copy_reasoning", "To the clipboard (OSC 52, works over SSH)"),
    ("Toggle reasoning pane", "toggle_reasoning", "Hide or show the Reasoning pane"),
    ("Maximise reasoning pane", "maximize_reasoning", "Give the Reasoning pane the whole screen, or restore it"),
    ("Regenerate last turn", "regenerate", "Run both stages of the last turn again (or retry loading)"),
    ("Generation settings", "settings", "Max new tokens per stage, temperature"),
)


class ChatCommands(Provider):
    def _chat_screen(self) -> ChatScreen | None:
        # The palette is a screen of its own: look below it.
        for screen in reversed(self.app.screen_stack):
            if isinstance(screen, ChatScreen):
                return screen
        return None

    async def discover(self) -> Hits:
        screen = self._chat_screen()
        if screen is None:
            return
        for title, action, help_text in CHAT_COMMANDS:
            yield DiscoveryHit(title, partial(screen.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        screen = self._chat_screen()
        if screen is None:
            return
        matcher = self.matcher(query)
        for title, action, help_text in CHAT_COMMANDS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(screen.run_action, action), help=help_text)
