"""Conversational records in the formats TRL and the HF hub use, converted to the card's history.

* ``{"messages": [{"role": ..., "content": ...}, ...]}``: roles ``system``, ``user``, ``assistant``,
  and ours, ``<|reasoning|>`` (or ``reasoning``);
* ``{"prompt": [...messages], "completion": [...messages]}`` (TRL's conversational prompt-completion):
  the two lists in a row.

An assistant message may carry its reasoning as other tools write it, and it becomes the reasoning
turn right before that answer:

* a ``reasoning_content`` (vLLM, DeepSeek) or ``reasoning`` (TRL, OpenAI-style) string field;
* a ``<think>…</think>`` prefix of its content (DeepSeek-R1, Qwen3): the newlines just inside the
  tags and the whitespace after ``</think>`` are layout, not text, and are dropped.

Pure: no torch. Every problem raises ``ValueError``/``TypeError`` with a one-line reason naming the
message; ``JsonlDataset`` prefixes the file and line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from reasonchat.chat_template import REASONING_FIELDS
from reasonchat.template import ASSISTANT_ROLE, REASONING_ROLE, message_parts

THINK_OPEN: Final = "<think>"
THINK_CLOSE: Final = "</think>"
KNOWN_SHAPES: Final = (
    "expected 'messages' (a list of role/content objects), 'prompt' and 'completion' (two such lists), "
    "or 'question', 'reasoning' and 'answer'"
)


def split_think(content: str) -> tuple[str | None, str]:
    """``(reasoning, answer)`` of an assistant content with a ``<think>…</think>`` prefix, else
    ``(None, content)``."""
    stripped = content.lstrip()
    if not stripped.startswith(THINK_OPEN):
        return None, content
    inner, close, rest = stripped[len(THINK_OPEN) :].partition(THINK_CLOSE)
    if not close:
        raise ValueError(f"'{THINK_OPEN}' without '{THINK_CLOSE}'")
    return inner.strip("\n"), rest.lstrip()


def _reasoning_field(message: Mapping[str, Any], index: int) -> str | None:
    found = [(name, message[name]) for name in REASONING_FIELDS if message.get(name) is not None]
    if len(found) > 1:
        raise ValueError(f"message {index}: both {found[0][0]!r} and {found[1][0]!r}; keep one")
    if not found:
        return None
    name, value = found[0]
    if not isinstance(value, str):
        raise TypeError(f"message {index}: {name!r} must be a string, got {type(value).__name__}")
    return value


def messages_to_history(messages: Sequence[Any]) -> list[dict[str, str]]:
    """The card's history for a list of messages, with assistant reasoning written out as its turn."""
    history: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        role, content = message_parts(message, index)
        if role == ASSISTANT_ROLE:
            reasoning = _reasoning_field(message, index)
            try:
                thought, answer = split_think(content)
            except ValueError as err:
                raise ValueError(f"message {index}: {err}") from None
            if thought is not None:
                if reasoning is not None:
                    raise ValueError(f"message {index}: a reasoning field and a '{THINK_OPEN}' prefix; keep one")
                reasoning, content = thought, answer
            if reasoning is not None:
                if history and history[-1]["role"] == REASONING_ROLE:
                    raise ValueError(f"message {index}: carries reasoning but follows a reasoning turn")
                history.append({"role": REASONING_ROLE, "content": reasoning})
        elif any(message.get(name) is not None for name in REASONING_FIELDS):
            raise ValueError(f"message {index}: only an assistant message can carry a reasoning field")
        history.append({"role": role, "content": content})
    return history


def record_messages(record: Mapping[str, Any]) -> list[Any] | None:
    """The message list of a ``messages`` or ``prompt``/``completion`` record; ``None`` for other shapes."""
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        return messages
    if "prompt" in record or "completion" in record:
        prompt, completion = record.get("prompt"), record.get("completion")
        if not isinstance(prompt, list) or not isinstance(completion, list):
            raise ValueError(
                "'prompt' and 'completion' must both be lists of messages (plain-text prompt/completion "
                "records have no roles to train on)"
            )
        if not completion:
            raise ValueError("'completion' is empty")
        return prompt + completion
    return None
