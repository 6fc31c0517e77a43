"""Terminal safety: the one filter all model- and file-originated text passes before display.

Rich and Textual write text to the terminal as it is, so a model (or an imported file) could emit
OSC 52 to set the clipboard, OSC 8 links, cursor moves or a bare ESC that confuses the terminal.
"""

from __future__ import annotations

import re

# Order matters: whole sequences first, so their parameters do not survive as visible junk. An
# unterminated string sequence ends at the line's end: its payload never holds a newline, and
# swallowing the rest of a model's answer would lose text.
#
# Each sequence's ending is a group of its own, so a match whose ending did not match (``lastindex is
# None``) and that reaches the end of the text is still open: ``StreamSanitizer`` waits for its end.
_SEQUENCES = re.compile(
    r"""
      \x1b\][^\x07\x1b\x9c\n]*(\x07|\x1b\\|\x9c)?    # OSC ... (BEL | ST), or unterminated
    | \x9d[^\x07\x1b\x9c\n]*(\x07|\x1b\\|\x9c)?      # 8-bit OSC
    | \x1b[PX^_][^\x1b\x9c\n]*(\x1b\\|\x9c)?         # DCS, SOS, PM, APC strings
    | [\x90\x98\x9e\x9f][^\x1b\x9c\n]*(\x1b\\|\x9c)? # their 8-bit forms
    | \x1b\[[0-?]*[ -/]*([@-~])?                       # CSI (7-bit)
    | \x9b[0-?]*[ -/]*([@-~])?                         # CSI (8-bit)
    | \x1b[ -/]*([0-~])?                               # other ESC sequences, or a bare ESC
    """,
    re.VERBOSE,
)
# What can open a sequence: ESC and the 8-bit CSI, OSC, DCS, SOS, PM and APC.
_STARTS = re.compile(r"[\x1b\x9b\x9d\x90\x98\x9e\x9f]")
# The second character of a two-character 7-bit introducer (CSI, OSC, DCS, SOS, PM, APC).
_ESC_INTRODUCED = frozenset("[]PX^_")
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


class StreamSanitizer:
    """``sanitize`` for text that arrives in chunks (a model's stream, a replay's recorded deltas).

    Sanitizing each chunk on its own would let a sequence split across two chunks through: the
    first half is removed as an unterminated sequence and the second half shows as text (an OSC 52
    payload, ``31m``). ``feed`` returns what is safe to show now and holds back a sequence whose
    end has not arrived; ``flush`` ends the stream. For every text and every way to split it,
    ``"".join(feed(c) for c in chunks) + flush() == sanitize("".join(chunks))`` exactly:

    - Only an open sequence is held, and all of it is removed whatever follows (a sequence only
      grows), so nothing visible ever waits, and no bound on waiting is needed.
    - What decides how an open sequence goes on is only its introducer and its last character
      (inside a string's body, CSI parameters, or intermediates), so that is all that is kept:
      at most three characters, however long an OSC 52 payload or a sixel image runs.
    - A trailing ``\\r`` needs no holding: ``\\r\\n`` becomes ``\\n`` and a lone ``\\r`` is dropped, so
      either side of that split gives the same text.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        if not self._held and chunk.isprintable():
            return chunk  # the common case: a plain token
        text = self._held + chunk
        self._held = ""
        if not _STARTS.search(text):
            return sanitize(text)
        last = None
        for last in _SEQUENCES.finditer(text):
            pass
        if last is None or last.end() < len(text) or last.lastindex is not None:
            return sanitize(text)  # every sequence is complete
        start = last.start()
        intro = 2 if text[start] == "\x1b" and text[start + 1 : start + 2] in _ESC_INTRODUCED else 1
        self._held = text[start : start + intro] + text[start + intro :][-1:]
        return sanitize(text[:start])

    def flush(self) -> str:
        """The end of the stream: what is held, sanitized as ``sanitize`` would (always "", as only
        an open sequence is held, which ``sanitize`` removes)."""
        held, self._held = self._held, ""
        return sanitize(held)

    def reset(self) -> None:
        """Forget what is held (a new stage or stream starts)."""
        self._held = ""
