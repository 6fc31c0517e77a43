"""``train --data`` reads our JSONL and the conversational format TRL and the HF hub use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonchat.errors import UserError
from reasonchat.template import DEFAULT_SYSTEM_PROMPT, REASONING_ROLE
from reasonchat.training.data import JsonlDataset
from reasonchat.training.masks import prepare_conversation_template

OURS = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "What is 2 + 3?"},
    {"role": REASONING_ROLE, "content": "2 + 3\nones: 2+3=5 -> 5\nresult: 5"},
    {"role": "assistant", "content": "2 + 3 = 5"},
]
REASONING = OURS[2]["content"]


def hub(**assistant_fields) -> dict:
    return {"messages": [OURS[0], OURS[1], {"role": "assistant", **assistant_fields}]}


@pytest.mark.parametrize(
    "record",
    [
        hub(content="2 + 3 = 5", reasoning_content=REASONING),  # vLLM / DeepSeek
        hub(content="2 + 3 = 5", reasoning=REASONING),  # TRL / OpenAI-style
        hub(content=f"<think>\n{REASONING}\n</think>\n\n2 + 3 = 5"),  # DeepSeek-R1 / Qwen3
        hub(content=f"<think>{REASONING}</think>2 + 3 = 5"),
        {"messages": [OURS[0], OURS[1], {"role": "reasoning", "content": REASONING}, OURS[3]]},
        {"prompt": OURS[:2], "completion": [{"role": "assistant", "content": "2 + 3 = 5",
                                             "reasoning_content": REASONING}]},  # fmt: skip
        {"system": "S", "question": "What is 2 + 3?", "reasoning": REASONING, "answer": "2 + 3 = 5"},
    ],
    ids=["reasoning_content", "reasoning", "think-newlines", "think-tight", "our-messages",
         "prompt-completion", "flat"],  # fmt: skip
)
def test_every_format_gives_the_same_history(record: dict) -> None:
    assert prepare_conversation_template(record) == OURS


def test_multi_turn_hub_conversation_and_an_empty_think() -> None:
    record = {"messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "<think>\n\n</think>\n\nHello!"},  # Qwen3's non-thinking turn
        {"role": "user", "content": "1+1"},
        {"role": "assistant", "content": "1 + 1 = 2", "reasoning_content": "ones: 1+1=2"},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome."},  # no reasoning at all: the answer alone
    ]}  # fmt: skip
    assert prepare_conversation_template(record) == [
        {"role": "user", "content": "hi"},
        {"role": REASONING_ROLE, "content": ""},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "1+1"},
        {"role": REASONING_ROLE, "content": "ones: 1+1=2"},
        {"role": "assistant", "content": "1 + 1 = 2"},
        {"role": "user", "content": "thanks"},
        {"role": "assistant", "content": "You're welcome."},
    ]
    flat = prepare_conversation_template({"question": "q", "reasoning": "r", "answer": "a"})
    assert flat[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}


BAD = [
    ({"text": "<|im_start|>user\nhi"}, r"not a known example format \(keys: 'text'\): expected 'messages'"),
    ({"conversations": [{"from": "human", "value": "hi"}]}, r"not a known example format \(keys: 'conversations'\)"),
    ({"prompt": "2+3", "completion": "5"}, r"'prompt' and 'completion' must both be lists"),
    (hub(content="<think>never closed"), r"message 2: '<think>' without '</think>'"),
    (hub(content="<think>r</think>a", reasoning="r"), r"message 2: a reasoning field and a '<think>' prefix"),
    (hub(content="a", reasoning="r", reasoning_content="r"), r"message 2: both 'reasoning_content' and 'reasoning'"),
    (hub(content="a", reasoning=3), r"message 2: 'reasoning' must be a string, got int"),
    ({"messages": [{"role": "user", "content": "q", "reasoning": "r"}, {"role": "assistant", "content": "a"}]},
     r"message 0: only an assistant message can carry a reasoning field"),
    ({"messages": [OURS[1], {"role": "reasoning", "content": "r"}, {"role": "assistant", "content": "a",
                                                                       "reasoning": "r"}]},
     r"message 2: carries reasoning but follows a reasoning turn"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "q"}]}]},
     r"message 0: content must be a string, got list"),
    ({"messages": [{"role": "tool", "content": "{}"}]}, r"message 0: unknown role 'tool'"),
    ({"messages": [{"role": "user", "content": "q"}]}, r"the conversation has no reasoning or assistant turn"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "message"), BAD)
def test_anything_else_is_one_line_naming_the_file_and_line(tmp_path: Path, record: dict, message: str) -> None:
    path = tmp_path / "d.jsonl"
    good = json.dumps({"question": "q", "reasoning": "r", "answer": "a"})
    path.write_text(good + "\n\n" + json.dumps(record) + "\n")
    with pytest.raises(UserError, match=r"d\.jsonl:3: " + message) as info:
        JsonlDataset(path, tokenizer=None).validate()
    assert "\n" not in str(info.value)


def test_a_hub_file_trains_the_reasoning_and_the_answer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from reasonchat.demo_model import model_dir

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    path = tmp_path / "hub.jsonl"
    path.write_text(json.dumps(hub(content=f"<think>\n{REASONING}\n</think>\n\n2 + 3 = 5")) + "\n")
    (example,) = list(JsonlDataset(path, tokenizer))
    trained = [t for t, m in zip(example.input_ids, example.mask, strict=True) if m]
    assert tokenizer.decode(trained) == f"{REASONING}<|im_end|>2 + 3 = 5<|im_end|>"
