"""``reasonchat replay``: the replay screen as an app of its own. Needs no model: importing this
module imports neither torch nor transformers, so a replay starts fast on a laptop."""

from __future__ import annotations

from textual.app import App

from reasonchat.conversation import Conversation
from reasonchat.tui.commands import ScreenCommands
from reasonchat.tui.look import HORIZONTAL_BREAKPOINTS, apply_theme
from reasonchat.tui.screens.replay import ReplayScreen


class ReplayApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "reasonchat replay"
    COMMANDS = App.COMMANDS | {ScreenCommands}
    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS

    def __init__(self, conversation: Conversation, speed: float, source: str, theme: str | None = None):
        super().__init__()
        self.conversation = conversation
        self.speed = speed
        self.source = source
        self.theme_name = theme

    def get_default_screen(self) -> ReplayScreen:
        return ReplayScreen(self.conversation, self.speed, self.source)

    def on_mount(self) -> None:
        apply_theme(self, self.theme_name)
