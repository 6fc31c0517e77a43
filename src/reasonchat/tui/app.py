"""The Textual application: one chat screen (the stylesheet, theme, palette, screenshots and clipboard
come from ``BaseApp``, shared with the replay app).

Importing this module does not import torch or transformers: the first frame comes first, and the
model loads in a background thread afterwards (see ``ChatScreen.load_model``).
"""

from __future__ import annotations

from reasonchat.tui.base_app import BaseApp
from reasonchat.tui.options import AppOptions
from reasonchat.tui.screens.chat import ChatScreen


class ReasonchatApp(BaseApp):
    TITLE = "reasonchat"

    def __init__(self, options: AppOptions) -> None:
        super().__init__(theme=options.theme, data_dir=options.data_dir)
        self.options = options

    def get_default_screen(self) -> ChatScreen:
        return ChatScreen(self.options)
