"""Incremental detokenization: text deltas from a growing list of token ids.

``TextIteratorStreamer`` re-decodes everything since the last newline on every token, which is
quadratic on a long paragraph. This keeps a small window instead (the approach vLLM uses): decode
``ids[prefix:]`` and ``ids[prefix:read]``, emit the difference, and advance once the window decodes to
complete characters. A byte-level BPE token may hold half a UTF-8 character; such text (ending in
U+FFFD) is held back until the next token completes it.
"""

from __future__ import annotations

from typing import Protocol

REPLACEMENT = "\ufffd"


class Decoder(Protocol):
    def decode(self, ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDecoder:
    def __init__(self, tokenizer: Decoder, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self._prefix = 0  # start of the window that gives context to the next token's text
        self._read = 0  # ids before this index have been emitted as text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes (possibly empty)."""
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        full_text = self._decode(self.ids[self._prefix :])
        if len(full_text) > len(prefix_text) and not full_text.endswith(REPLACEMENT):
            delta = full_text[len(prefix_text) :]
            self._prefix, self._read = self._read, len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Text still held back at the end (an incomplete character decodes to U+FFFD, as in the card)."""
        prefix_text = self._decode(self.ids[self._prefix : self._read])
        full_text = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return full_text[len(prefix_text) :]
