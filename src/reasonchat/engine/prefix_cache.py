"""One KV cache per conversation, reused across both stages and across turns.

Every stage re-tokenizes its full prompt (the text is the source of truth, as in the card). The ids
the cache already covers are compared with the new prompt: the longest common prefix is kept, the cache
is cropped to it, and only the rest is prefilled. A re-encoded prompt is not always an extension of the
cached ids (a byte token that decoded to U+FFFD re-encodes differently), hence the prefix search
rather than a length check.
"""

from __future__ import annotations

from typing import Any


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    def __init__(self, new_cache: Any) -> None:
        self._new_cache = new_cache  # () -> an empty transformers Cache
        self.conversation_id: str | None = None
        self.ids: list[int] = []
        self.cache: Any = None

    def reset(self) -> None:
        self.conversation_id = None
        self.ids = []
        self.cache = None

    def prepare(self, conversation_id: str, prompt_ids: list[int]) -> tuple[Any, int]:
        """A cache to pass to ``generate`` for ``prompt_ids`` and how many of them it already holds.

        At least one prompt token is always left to prefill: with a cache covering the whole prompt,
        generate silently produces wrong output.
        """
        if conversation_id != self.conversation_id or self.cache is None:
            self.reset()
            self.conversation_id = conversation_id
            self.cache = self._new_cache()
            return self.cache, 0
        keep = min(common_prefix_length(self.ids, prompt_ids), len(prompt_ids) - 1)
        cached = int(self.cache.get_seq_length())  # a static cache's is a tensor
        if keep <= 0:
            self.cache = self._new_cache()
            self.ids = []
            return self.cache, 0
        if cached > keep:
            self.cache.crop(keep - cached)  # transformers 5 takes the count to remove, negative
        self.ids = self.ids[:keep]
        return self.cache, keep

    def adopt(self, conversation_id: str, cache: Any) -> Any:
        """``cache`` (empty) becomes the conversation's, in place of whatever was held: the fast path
        gave up mid-stage and the eager one goes on with a cache of its kind."""
        self.conversation_id, self.ids, self.cache = conversation_id, [], cache
        return cache

    def record(self, sequence: list[int]) -> None:
        """After generation: the cache holds every token of ``sequence`` but the last one sampled."""
        if self.cache is not None:
            self.ids = sequence[: int(self.cache.get_seq_length())]
