"""``reasonchat replay``: the replay screen as an app of its own. Needs no model: importing this
module imports neither torch nor transformers, so a replay starts fast on a laptop."""

from __future__ import annotations

import os

from reasonchat.conversation import Conversation
from reasonchat.tui.base_app import BaseApp
from reasonchat.tui.screens.replay import ReplayScreen


class ReplayApp(BaseApp):
    TITLE = "reasonchat replay"

    def __init__(
        self,
        conversation: Conversation,
        speed: float,
        source: str,
        theme: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(theme=theme, data_dir=data_dir)
        self.conversation = conversation
        self.speed = speed
        self.source = source

    def get_default_screen(self) -> ReplayScreen:
        return ReplayScreen(self.conversation, self.speed, self.source)
