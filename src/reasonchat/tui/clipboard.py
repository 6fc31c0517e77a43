"""OSC 52 clipboard sequences; inside tmux, wrapped so tmux passes them on to the real terminal."""

from __future__ import annotations

import base64


def osc52(text: str) -> str:
    payload = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"\x1b]52;c;{payload}\x07"


def tmux_passthrough(sequence: str) -> str:
    """tmux's DCS passthrough: every ESC inside is doubled (needs ``allow-passthrough on``)."""
    return "\x1bPtmux;" + sequence.replace("\x1b", "\x1b\x1b") + "\x1b\\"
