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


# Characters that change how text reads without showing themselves: bidirectional embeddings,
# overrides, isolates and marks (the "Trojan Source" class), zero-width spaces, invisible operators
# and a stray byte-order mark. On screen they are shown as <U+XXXX>; exports keep the exact text.
_INVISIBLE = re.compile("[\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# The zero-width joiners belong to emoji sequences and many scripts, so they are shown only where
# they follow an ASCII character: there they join nothing and only hide a difference ("ad\u200dmin").
_JOINERS = frozenset("\u200c\u200d")
# One pass, so the joiner's rule reads the text as given (not a <U+...> put in before it).
_TO_SHOW = re.compile(_INVISIBLE.pattern + "|(?<=[\x00-\x7f])[\u200c\u200d]")


def _visible(char: str) -> str:
    return f"<U+{ord(char):04X}>"


def _shown(match: re.Match[str]) -> str:
    return _visible(match.group())


def reveal_invisible(text: str, before: str = "") -> str:
    """``text`` with invisible format characters made visible as ``<U+XXXX>``. ``before`` is the
    character that precedes ``text`` (a stream's previous chunk), for a joiner at its start."""
    if text.isascii():
        return text
    shown = _TO_SHOW.sub(_shown, text)
    if text[0] in _JOINERS and (not before or before.isascii()):
        shown = _visible(text[0]) + shown[1:]  # nothing before it in ``text``: the look-behind missed it
    return shown


def for_screen(text: str) -> str:
    """Model or file text as a terminal may show it: sanitized, and nothing invisible left unseen."""
    return reveal_invisible(sanitize(text))


class ScreenStream:
    """``for_screen`` for text that arrives in chunks: the outputs of ``feed`` joined equal
    ``for_screen`` of the whole text, however it is split."""

    __slots__ = ("_sanitizer", "_last")

    def __init__(self) -> None:
        self._sanitizer = StreamSanitizer()
        self._last = ""  # the last character shown, as sanitized (before anything was revealed)

    def feed(self, chunk: str) -> str:
        safe = self._sanitizer.feed(chunk)
        if not safe:
            return ""
        shown = reveal_invisible(safe, self._last)
        self._last = safe[-1]
        return shown

    def flush(self) -> str:
        rest = self._sanitizer.flush()
        shown = reveal_invisible(rest, self._last) if rest else ""
        self._last = rest[-1:] or self._last
        return shown

    def reset(self) -> None:
        self._sanitizer.reset()
        self._last = ""
