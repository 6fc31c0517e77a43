"""Text that can be stored and encoded: no lone surrogates.

A Python ``str`` may hold a lone surrogate (U+D800–U+DFFF): a server's JSON can carry ``"\\udc9b"``,
a file's JSON ``"\\ud800"``, a non-UTF-8 command line or stdin decodes with ``surrogateescape``. No
UTF-8 encoder accepts one, so SQLite's save raises ``UnicodeEncodeError``, and a stdout using
``surrogateescape`` writes it back as a raw byte (``\\udc9b`` becomes 0x9B, an 8-bit CSI). Text is
made valid where it enters (the turn runner for every backend, importing a file, the session for what
a user types), once, and is valid everywhere after that.

Pure: no torch, no textual.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"

_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH = re.compile("[\ud800-\udbff]$")


def valid_text(text: str) -> str:
    """``text`` with each surrogate pair joined into its character and each lone surrogate as U+FFFD."""
    if _SURROGATE.search(text) is None:
        return text
    # UTF-16 holds surrogates as themselves: decoding joins a pair and replaces a lone one.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_strings(value: Any) -> Any:
    """A parsed JSON value with ``valid_text`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [valid_strings(item) for item in value]
    if isinstance(value, dict):
        return {valid_text(key): valid_strings(item) for key, item in value.items()}
    return value


class StreamValidator:
    """``valid_text`` for text that arrives in chunks, none of it lost: a high surrogate ending one
    chunk is held back, since the next may begin with its low half (a server sending UTF-16 escapes)."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, chunk: str) -> str:
        chunk = self._held + chunk
        self._held = chunk[-1] if _HIGH.search(chunk) else ""
        return valid_text(chunk[: len(chunk) - len(self._held)])

    def flush(self) -> str:
        """What is held back at the end (a high surrogate no low one followed: U+FFFD)."""
        held, self._held = self._held, ""
        return valid_text(held)
