"""Saved conversations as training data: what a user curated (the active path, good and bad marks)
in the formats ``reasonchat train --data`` and TRL read. Pure: no torch, no textual, no store.

* ``train``: one JSON line per conversation, ``{"messages": [...]}`` with the card's roles: its active
  path, edited reasonings as they were edited. With ``marked``, one line per version marked good
  instead (its turn alone after the system prompt: the loss covers every reasoning and answer of an
  example, so an earlier, unmarked turn must not ride along).
* ``preference``: TRL's conversational preference rows ``{"prompt", "chosen", "rejected"}``, for every
  turn with a version marked good and one marked bad: the prompt is the active path up to the
  question, chosen and rejected are each version's reasoning and answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from reasonchat.conversation import AnswerVariant, Conversation, ReasoningVariant
from reasonchat.template import ASSISTANT_ROLE, REASONING_ROLE, SYSTEM_ROLE, USER_ROLE
from reasonchat.transfer import canonical_json

FORMATS = ("train", "preference")


def train_records(conversations: Iterable[Conversation], marked: bool = False) -> Iterator[dict[str, Any]]:
    for conversation in conversations:
        if not marked:
            messages = conversation.history()
            if any(m["role"] in (REASONING_ROLE, ASSISTANT_ROLE) for m in messages):
                yield {"messages": messages}
            continue
        for index, turn in enumerate(conversation.turns):
            for variant in turn.variants:
                for answer in variant.answers:
                    if answer.mark == "good" and answer.answer is not None:
                        prompt = _system(conversation) + [{"role": USER_ROLE, "content": turn.user}]
                        yield {"messages": prompt + _completion(variant, answer)}


def preference_records(conversations: Iterable[Conversation]) -> Iterator[dict[str, Any]]:
    for conversation in conversations:
        for index, turn in enumerate(conversation.turns):
            marked = [
                (answer.mark, variant, answer)
                for variant in turn.variants
                for answer in variant.answers
                if answer.mark is not None and answer.answer is not None
            ]
            prompt = conversation.history(index) + [{"role": USER_ROLE, "content": turn.user}]
            for mark, good_variant, good in marked:
                if mark != "good":
                    continue
                for other, bad_variant, bad in marked:
                    if other == "bad":
                        yield {
                            "prompt": prompt,
                            "chosen": _completion(good_variant, good),
                            "rejected": _completion(bad_variant, bad),
                        }


def to_jsonl(records: Iterable[dict[str, Any]]) -> str:
    return "".join(canonical_json(record, indent=None) for record in records)


def export(conversations: Iterable[Conversation], format_name: str, marked: bool = False) -> str:
    if format_name == "train":
        return to_jsonl(train_records(conversations, marked))
    return to_jsonl(preference_records(conversations))


def _system(conversation: Conversation) -> list[dict[str, str]]:
    if conversation.system_prompt is None:
        return []
    return [{"role": SYSTEM_ROLE, "content": conversation.system_prompt}]


def _completion(variant: ReasoningVariant, answer: AnswerVariant) -> list[dict[str, str]]:
    out = []
    if variant.reasoning is not None:
        out.append({"role": REASONING_ROLE, "content": variant.reasoning})
    out.append({"role": ASSISTANT_ROLE, "content": answer.answer or ""})
    return out
