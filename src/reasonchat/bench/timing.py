"""One greedy stage timed to its first text, as every benchmark measures it, and the progress callback."""

from __future__ import annotations

import time
from collections.abc import Callable

from reasonchat.conversation import Conversation, Stage, StageStats
from reasonchat.engine.protocol import Backend, StageRequest
from reasonchat.settings import GenerationSettings

# Receives one line of progress per step of a benchmark.
Report = Callable[[str], None]


def timed_stage(
    backend: Backend,
    conversation: Conversation,
    stage: Stage,
    max_new_tokens: int,
    prompt: str | None = None,
) -> tuple[float, str, StageStats]:
    """One greedy stage of the last turn (``prompt``: another one for it, a think-more's, say):
    (seconds to the first text, including tokenization and any request; text; stats)."""
    request = StageRequest(
        conversation_id=conversation.id,
        stage=stage,
        prompt=prompt if prompt is not None else conversation.stage_prompt(len(conversation.turns) - 1, stage),
        settings=GenerationSettings(max_new_tokens=max_new_tokens, temperature=0),
        context_limit=10**9,  # a benchmark measures lengths past any default; a server enforces its own
    )
    start = time.perf_counter()
    stream = backend.stream(request)
    ttft: float | None = None
    text = ""
    for delta in stream:
        if ttft is None:
            ttft = time.perf_counter() - start
        text += delta
    return (ttft if ttft is not None else time.perf_counter() - start), text, stream.stats
