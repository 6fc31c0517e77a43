"""The one door between the UI/CLI and a model: the ``Backend`` protocol and its data types.

A backend counts tokens, streams one stage of a turn, cancels, and closes. It knows nothing of
conversations beyond an id (to keep one KV cache per conversation) and never imports textual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from reasonchat.conversation import Stage, StageStats
from reasonchat.errors import ReasonchatError, UserError
from reasonchat.settings import GenerationSettings
from reasonchat.template import DEFAULT_CONTEXT_LIMIT


class GenerationError(ReasonchatError):
    """Generation failed (an exception in the model, out of memory, a dropped server)."""


class ContextOverflow(UserError):
    """The prompt leaves no room to generate within the context limit."""

    def __init__(self, stage: Stage, prompt_tokens: int, limit: int) -> None:
        self.stage = stage
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        super().__init__(
            f"the {stage} prompt is {prompt_tokens:,} tokens, which leaves no room to generate "
            f"within the {limit:,}-token context limit; start a new conversation or drop old turns"
        )


def cap_new_tokens(stage: Stage, prompt_tokens: int, limit: int, requested: int) -> int:
    """How many tokens a stage may generate: ``requested``, capped so prompt + output fit ``limit``.

    The card's loop checked the prompt alone; a prompt of ``limit - 10`` then generated past the limit.
    """
    room = limit - prompt_tokens
    if room < 1:
        raise ContextOverflow(stage, prompt_tokens, limit)
    return min(requested, room)


@dataclass
class StageRequest:
    """One generation: the full prompt text (the source of truth, as in the card) and its limits."""

    conversation_id: str
    stage: Stage
    prompt: str
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    context_limit: int = DEFAULT_CONTEXT_LIMIT
    cancel: threading.Event = field(default_factory=threading.Event)


@runtime_checkable
class StageStream(Protocol):
    """Iterating yields text deltas as they are decoded.

    ``stats`` is live: ``prompt_tokens`` and ``cached_tokens`` are set before the first delta,
    ``new_tokens`` grows while streaming, and ``ttft_s``, ``decode_s`` and ``stop_reason`` are set
    when iteration ends. A failure raises ``GenerationError`` from the iteration (never a hang).
    """

    stats: StageStats

    def __iter__(self) -> Iterator[str]: ...


# ``(request, count, on_text(sample, delta))`` -> each sample's text and stats, in order.
BatchSampler = Callable[[StageRequest, int, Callable[[int, str], None]], list[tuple[str, StageStats]]]


@runtime_checkable
class Backend(Protocol):
    """What the UI and the CLI may call. Implementations: transformers (local), OpenAI-compatible HTTP."""

    @property
    def description(self) -> str:
        """The model, for the status bar and the store (a path, a hub id, a served name)."""
        ...

    @property
    def counts_are_estimates(self) -> bool:
        """Whether ``count_tokens`` guesses (from the text's length) instead of using the model's
        tokenizer; the UI then shows counts as approximate. A plain class attribute satisfies it."""
        ...

    @property
    def notice(self) -> str | None:
        """One line about how the backend runs that the user should know (a fast path that fell back
        to the eager one), or None. A plain attribute satisfies it."""
        ...

    @property
    def batch_sampler(self) -> BatchSampler | None:
        """How this backend samples several reasonings of one prompt in one batch (the prompt
        prefilled once), or None: the session then samples them one after another. A plain class
        attribute satisfies it."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text`` as the model sees it."""
        ...

    def stream(self, request: StageRequest) -> StageStream:
        """Start one stage. Raises ``ContextOverflow`` (before any work) when the prompt leaves no room."""
        ...

    def cancel(self) -> None:
        """Stop the running stage from any thread; it ends with stop reason ``cancelled``."""
        ...

    def reset(self) -> None:
        """Forget any cached state (the KV cache of the current conversation)."""
        ...

    def close(self) -> None:
        """Release the model or connection."""
        ...
