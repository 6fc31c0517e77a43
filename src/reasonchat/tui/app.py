"""The Textual application: one chat screen, the command palette entries, clipboard over SSH.

Importing this module does not import torch or transformers: the first frame comes first, and the
model loads in a background thread afterwards (see ``ChatScreen.load_model``).
"""

from __future__ import annotations

import os

from textual.app import App

from reasonchat.tui.clipboard import osc52, tmux_passthrough
from reasonchat.tui.commands import ScreenCommands
from reasonchat.tui.look import HORIZONTAL_BREAKPOINTS, apply_theme
from reasonchat.tui.options import AppOptions
from reasonchat.tui.screens.chat import ChatScreen


class ReasonchatApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "reasonchat"
    COMMANDS = App.COMMANDS | {ScreenCommands}
    HORIZONTAL_BREAKPOINTS = HORIZONTAL_BREAKPOINTS

    def __init__(self, options: AppOptions) -> None:
        super().__init__()
        self.options = options

    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(self.options)

    def on_mount(self) -> None:
        apply_theme(self, self.options.theme)

    def copy_to_clipboard(self, text: str) -> None:
        # Textual writes a bare OSC 52, which tmux only forwards with set-clipboard on; the wrapped copy
        # reaches the outer terminal through passthrough as well.
        super().copy_to_clipboard(text)
        if os.environ.get("TMUX") and self._driver is not None:
            self._driver.write(tmux_passthrough(osc52(text)))
