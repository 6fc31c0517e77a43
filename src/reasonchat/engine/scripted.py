"""A backend that plays back scripted text: deterministic UI tests, snapshots and demos without torch.

Tokens are whitespace-separated words (with their trailing space), so counts are easy to predict.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator

from reasonchat.conversation import Stage, StageStats
from reasonchat.engine.protocol import (
    GenerationError,
    StageRequest,
    cap_new_tokens,
)

_WORDS = re.compile(r"\S+\s*|\s+")

Script = Callable[[StageRequest], str]


def echo_script(request: StageRequest) -> str:
    """Reasoning and answer that quote the last user message."""
    question = request.prompt.rsplit("<|im_start|>user\n", 1)[-1].split("<|im_end|>", 1)[0]
    if request.stage == "reasoning":
        return f"The user asked: {question}\nI will answer briefly."
    return f"You said: **{question}**"


class ScriptedBackend:
    counts_are_estimates = False  # it counts words exactly as its own streams do
    batch_sampler = None  # samples one after another
    notice = None

    def __init__(
        self,
        script: Script = echo_script,
        *,
        delay_s: float = 0.0,
        fail_at: tuple[Stage, int] | None = None,
        description: str = "scripted",
    ) -> None:
        self.script = script
        self.delay_s = delay_s
        self.fail_at = fail_at
        self._description = description
        self._current: threading.Event | None = None
        self.requests: list[StageRequest] = []

    @property
    def description(self) -> str:
        return self._description

    def count_tokens(self, text: str) -> int:
        return len(_WORDS.findall(text))

    def stream(self, request: StageRequest) -> _ScriptedStream:
        prompt_tokens = self.count_tokens(request.prompt)
        budget = cap_new_tokens(
            request.stage, prompt_tokens, request.context_limit, request.settings.budget(request.stage)
        )
        self.requests.append(request)
        self._current = request.cancel
        return _ScriptedStream(self, request, prompt_tokens, budget)

    def cancel(self) -> None:
        if self._current is not None:
            self._current.set()

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


class _ScriptedStream:
    def __init__(
        self, backend: ScriptedBackend, request: StageRequest, prompt_tokens: int, budget: int
    ) -> None:
        self.backend = backend
        self.request = request
        self.budget = budget
        self.stats = StageStats(prompt_tokens=prompt_tokens)

    def __iter__(self) -> Iterator[str]:
        start = time.perf_counter()
        words = _WORDS.findall(self.backend.script(self.request))
        first: float | None = None
        stats = self.stats
        for word in words:
            if self.request.cancel.is_set():
                stats.stop_reason = "cancelled"
                break
            if stats.new_tokens >= self.budget:
                stats.stop_reason = "budget"
                break
            if self.backend.fail_at == (self.request.stage, stats.new_tokens):
                raise GenerationError("scripted failure")
            if self.backend.delay_s:
                time.sleep(self.backend.delay_s)
            stats.new_tokens += 1
            if first is None:
                first = time.perf_counter()
                stats.ttft_s = first - start
            yield word
        else:
            stats.stop_reason = "eos"
        end = time.perf_counter()
        stats.decode_s = end - (first or end)
