"""Messages the background threads post to the chat screen (``post_message`` is thread-safe and never
waits for the UI, unlike ``call_from_thread``)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from reasonchat.conversation import Conversation
from reasonchat.engine.protocol import Backend


@dataclass
class ModelLoadProgress(Message):
    text: str


@dataclass
class ModelLoaded(Message):
    backend: Backend


@dataclass
class ModelLoadFailed(Message):
    error: str


@dataclass
class NextPromptCounted(Message):
    """The size the reasoning prompt would have if ``text`` were sent now."""

    text: str
    tokens: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, NextPromptCounted)


@dataclass
class TurnsDropped(Message):
    """The outcome of "drop the oldest turns until it fits": a shortened copy, or ``None`` when even the
    message alone does not fit."""

    text: str
    reasoning: str | None  # the message's own reasoning, sent again with it
    conversation: Conversation | None
    dropped: int
