"""Terminal safety: the one filter all model- and file-originated text passes before display.

Rich and Textual write text to the terminal as it is, so a model (or an imported file) could emit
OSC 52 to set the clipboard, OSC 8 links, cursor moves or a bare ESC that confuses the terminal.
"""

from __future__ import annotations

import re

# Order matters: whole sequences first, so their parameters do not survive as visible junk. An
# unterminated string sequence ends at the line's end: its payload never holds a newline, and
# swallowing the rest of a model's answer would lose text.
_SEQUENCES = re.compile(
    r"""
      \x1b\][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?    # OSC ... (BEL | ST), or unterminated
    | \x9d[^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?      # 8-bit OSC
    | \x1b[PX^_][^\x1b\x9c\n]*(?:\x1b\\|\x9c)?         # DCS, SOS, PM, APC strings
    | [\x90\x98\x9e\x9f][^\x1b\x9c\n]*(?:\x1b\\|\x9c)? # their 8-bit forms
    | \x1b\[[0-?]*[ -/]*[@-~]?                         # CSI (7-bit)
    | \x9b[0-?]*[ -/]*[@-~]?                           # CSI (8-bit)
    | \x1b[ -/]*[0-~]?                                 # other ESC sequences, or a bare ESC
    """,
    re.VERBOSE,
)
# Remaining C0 controls except \t and \n, DEL, and the C1 range. Also lone surrogates (JSON "\udc9b"):
# under the C, POSIX or C.UTF-8 locale Python's stdout writes them with surrogateescape, U+DC9B as a bare
# 0x9B byte (8-bit CSI); elsewhere they make the write (or SQLite) raise.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def sanitize(text: str) -> str:
    """Return ``text`` without terminal control sequences or control characters.

    Keeps ``\\n`` and ``\\t``; ``\\r\\n`` becomes ``\\n`` and a lone ``\\r`` is dropped (it would let
    text overwrite what is already on the line). Lone surrogates are dropped too.
    """
    if text.isprintable():
        return text
    text = text.replace("\r\n", "\n")
    return _CONTROLS.sub("", _SEQUENCES.sub("", text))
