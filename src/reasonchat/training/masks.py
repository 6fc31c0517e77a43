"""The card's two training helpers: ``prepare_conversation_template`` and ``create_answer_mask``.

The loss is computed on what the model must learn to write: the reasoning and the answer. A turn is
rendered as ``<|im_start|>{role}\\n{content}<|im_end|>\\n``; the mask is True on the ``{content}``
tokens and the closing ``<|im_end|>`` of every reasoning and assistant turn (so the model learns to
stop), and False everywhere else: system and user turns, every role header ``<|im_start|>{role}\\n``
and the ``\\n`` after each ``<|im_end|>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reasonchat.conversation import Conversation
from reasonchat.template import (
    ASSISTANT_ROLE,
    DEFAULT_SYSTEM_PROMPT,
    IM_END,
    IM_START,
    REASONING_ROLE,
    SYSTEM_ROLE,
    USER_ROLE,
    normalize_history,
)
from reasonchat.token_ids import single_token_id
from reasonchat.training.formats import KNOWN_SHAPES, messages_to_history, record_messages

TRAINED_ROLES = frozenset({REASONING_ROLE, ASSISTANT_ROLE})
_FLAT_FIELDS = ("question", "reasoning", "answer")


def prepare_conversation_template(example: Mapping[str, Any]) -> list[dict[str, str]]:
    """The card's history (``system → user → <|reasoning|> → assistant``, any number of turns).

    Accepted shapes (``reasonchat.training.formats``):

    * ``{"messages": [{"role": ..., "content": ...}, ...]}`` with roles ``system`` (first only),
      ``user``, ``<|reasoning|>`` (or ``reasoning``) and ``assistant``, any number of turns; an
      assistant message's ``reasoning``/``reasoning_content`` field or ``<think>…</think>`` prefix
      becomes the reasoning turn before it (the format TRL and the HF hub use);
    * ``{"prompt": [...], "completion": [...]}``, TRL's conversational prompt-completion: both lists;
    * ``{"question": ..., "reasoning": ..., "answer": ...}`` with an optional ``"system"``. Without
      ``"system"`` the default system prompt is used, as in the card; ``"system": null`` means none.

    Raises ``TypeError`` (a value of the wrong type) or ``ValueError`` (anything else wrong) with a
    one-line reason.
    """
    if not isinstance(example, Mapping):
        raise TypeError(f"an example must be a JSON object, got {type(example).__name__}")
    messages = record_messages(example)
    if messages is not None:
        history = normalize_history(messages_to_history(messages))
        # The same shape rules as a saved conversation: system first, then user / reasoning / assistant.
        Conversation.from_history(history)
        if not any(m["role"] in TRAINED_ROLES for m in history):
            raise ValueError("the conversation has no reasoning or assistant turn to learn from")
        return history
    if not any(name in example for name in _FLAT_FIELDS):
        keys = ", ".join(map(repr, list(example)[:6])) or "none"
        raise ValueError(f"not a known example format (keys: {keys}): {KNOWN_SHAPES}")
    missing = [name for name in _FLAT_FIELDS if name not in example]
    if missing:
        raise ValueError(
            f"missing field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            "(an example needs 'messages', or 'question', 'reasoning' and 'answer')"
        )
    for name in _FLAT_FIELDS:
        if not isinstance(example[name], str):
            raise TypeError(f"field {name!r} must be a string, got {type(example[name]).__name__}")
    system = example.get("system", DEFAULT_SYSTEM_PROMPT)
    if system is not None and not isinstance(system, str):
        raise TypeError(f"field 'system' must be a string or null, got {type(system).__name__}")
    history = [] if system is None else [{"role": SYSTEM_ROLE, "content": system}]
    history += [
        {"role": USER_ROLE, "content": example["question"]},
        {"role": REASONING_ROLE, "content": example["reasoning"]},
        {"role": ASSISTANT_ROLE, "content": example["answer"]},
    ]
    return history


def _required_id(tokenizer: Any, token: str) -> int:
    token_id = single_token_id(tokenizer, token)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {token} token (run prepare-model first)")
    return token_id


def create_answer_mask(input_ids: Sequence[int], tokenizer: Any) -> list[bool]:
    """True exactly on the content tokens and the closing ``<|im_end|>`` of reasoning and assistant turns.

    ``input_ids`` is a rendered history (``apply_chat_template`` with both generation flags False),
    tokenized without added special tokens. The role of a turn is read from the tokens between
    ``<|im_start|>`` and the first ``\\n``; those tokens are the header and are never trained. Where the
    tokenizer merges the header's ``\\n`` with the first characters of the content (Qwen's BPE has
    ``\\n\\n``), that token carries content and is trained.
    """
    im_start = _required_id(tokenizer, IM_START)
    im_end = _required_id(tokenizer, IM_END)
    ids = [int(i) for i in input_ids]
    mask = [False] * len(ids)
    state = "outside"  # outside a turn | header (reading the role) | content
    header: list[int] = []
    trained = False
    for pos, token in enumerate(ids):
        if token == im_start:
            state, header, trained = "header", [], False
        elif token == im_end and state == "header":
            state = "outside"  # a turn without a header newline: nothing in it is trained
        elif state == "header":
            header.append(token)
            text = tokenizer.decode(header, skip_special_tokens=False)
            if "\n" in text:
                role, _, rest = text.partition("\n")
                trained = role in TRAINED_ROLES
                state = "content"
                if rest and trained:
                    mask[pos] = True  # the header's "\n" merged with content: a content token
        elif state == "content":
            mask[pos] = trained
            if token == im_end:
                state = "outside"
        # outside a turn (the "\n" after <|im_end|>, stray tokens): False
    return mask
