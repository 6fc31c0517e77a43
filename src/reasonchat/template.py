"""The model card's ChatML-with-reasoning template, byte for byte.

Each message renders as ``<|im_start|>{role}\\n{content}<|im_end|>\\n``. A user turn is answered in two
generations: stage 1 continues ``<|im_start|><|reasoning|>\\n`` and stage 2, after the reasoning turn is
in the history, continues ``<|im_start|>assistant\\n``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

SYSTEM_ROLE: Final = "system"
USER_ROLE: Final = "user"
REASONING_ROLE: Final = "<|reasoning|>"
ASSISTANT_ROLE: Final = "assistant"
ROLES: Final = (SYSTEM_ROLE, USER_ROLE, REASONING_ROLE, ASSISTANT_ROLE)
ROLE_ALIASES: Final = {"reasoning": REASONING_ROLE}

IM_START: Final = "<|im_start|>"
IM_END: Final = "<|im_end|>"
END_OF_TEXT: Final = "<|endoftext|>"
REASONING_TOKEN: Final = REASONING_ROLE

DEFAULT_SYSTEM_PROMPT: Final = "You are a helpful assistant"
DEFAULT_CONTEXT_LIMIT: Final = 32000
DEFAULT_MAX_NEW_TOKENS: Final = 3000

REASONING_GENERATION_PROMPT: Final = f"{IM_START}{REASONING_ROLE}\n"
ASSISTANT_GENERATION_PROMPT: Final = f"{IM_START}{ASSISTANT_ROLE}\n"

Message = Mapping[str, str]


def normalize_role(role: object, index: int) -> str:
    """The canonical role for ``role`` (``"reasoning"`` becomes ``<|reasoning|>``)."""
    if not isinstance(role, str):
        raise ValueError(f"message {index}: role must be a string, got {type(role).__name__}")
    role = ROLE_ALIASES.get(role, role)
    if role not in ROLES:
        raise ValueError(f"message {index}: unknown role {role!r} (expected one of {', '.join(ROLES)})")
    return role


def message_parts(message: object, index: int) -> tuple[str, str]:
    """Message ``index``'s canonical role and its content, or a ``ValueError`` naming it."""
    if not isinstance(message, Mapping):
        raise ValueError(f"message {index}: expected an object with 'role' and 'content'")
    if "role" not in message or "content" not in message:
        raise ValueError(f"message {index}: needs both 'role' and 'content'")
    role = normalize_role(message["role"], index)
    content = message["content"]
    if not isinstance(content, str):
        raise ValueError(f"message {index}: content must be a string, got {type(content).__name__}")
    return role, content


def normalize_history(history: Iterable[Message]) -> list[dict[str, str]]:
    """Validate ``history`` and return it as plain dicts with canonical roles."""
    normalized = []
    for index, message in enumerate(history):
        role, content = message_parts(message, index)
        normalized.append({"role": role, "content": content})
    return normalized


def render_message(role: str, content: str) -> str:
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def apply_chat_template(
    history: Iterable[Message],
    add_reasoning_generation_prompt: bool = True,
    add_assistant_generation_prompt: bool = False,
) -> str:
    """Render ``history`` exactly as the card's ``new_apply_chat_template`` does.

    As in the card, ``add_reasoning_generation_prompt`` wins when both flags are set: stage 2 must pass
    ``add_reasoning_generation_prompt=False, add_assistant_generation_prompt=True`` (the card's own
    stage-2 call forgot the first flag and asked for reasoning twice).

    With both flags False the card returns ``None``; this function returns the rendered history alone,
    which is what training and token counting need.

    Raises ``ValueError`` naming the message index for an unknown role or non-string content.
    """
    rendered = "".join(render_message(m["role"], m["content"]) for m in normalize_history(history))
    if add_reasoning_generation_prompt:
        return rendered + REASONING_GENERATION_PROMPT
    if add_assistant_generation_prompt:
        return rendered + ASSISTANT_GENERATION_PROMPT
    return rendered


def continue_reasoning_prompt(history: Iterable[Message], reasoning: str) -> str:
    """Stage 1 resumed ("think more"): ``history`` (ending with the user message) with the reasoning
    generation prompt, then ``reasoning`` so far, left open without its ``<|im_end|>`` so the model
    writes on where it stopped. It is the rendered history with that reasoning turn, less the turn's
    closing ``<|im_end|>\\n``: the KV cache of the earlier stage-1 run covers all of it.
    """
    return apply_chat_template(history, add_reasoning_generation_prompt=True) + reasoning
