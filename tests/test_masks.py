"""``prepare_conversation_template`` and ``create_answer_mask``, checked token by token.

The expected mask is computed independently of ``create_answer_mask``: from character spans of the
rendered text (content + closing ``<|im_end|>`` of every reasoning and assistant turn) and the fast
tokenizer's offsets. Both the real Qwen2.5 tokenizer (after ``prepare-model``) and the demo model's
tokenizer are used.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reasonchat.template import (
    ASSISTANT_ROLE,
    DEFAULT_SYSTEM_PROMPT,
    IM_END,
    IM_START,
    REASONING_ROLE,
    apply_chat_template,
)
from reasonchat.training.masks import create_answer_mask, prepare_conversation_template

TRAINED = {REASONING_ROLE, ASSISTANT_ROLE}


@pytest.fixture(scope="module")
def qwen_prepared(qwen_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real Qwen2.5 tokenizer after prepare-model (a tiny model with Qwen2.5's 151,936 rows)."""
    from transformers import AutoTokenizer

    from tests.test_prepare_model import prepared_qwen

    _, prepared, _ = prepared_qwen(qwen_tokenizer_dir, tmp_path_factory)
    return AutoTokenizer.from_pretrained(prepared)


@pytest.fixture(scope="module")
def demo_tokenizer():
    from transformers import AutoTokenizer

    from reasonchat.demo_model import model_dir

    return AutoTokenizer.from_pretrained(model_dir())


def expected_mask(history: list[dict[str, str]], tokenizer) -> tuple[list[int], list[bool]]:
    """The oracle: a token is trained iff its characters overlap a trained span."""
    text, spans = "", []
    for message in history:
        header = f"{IM_START}{message['role']}\n"
        start = len(text) + len(header)
        text += header + message["content"] + IM_END
        if message["role"] in TRAINED:
            spans.append((start, len(text)))
        text += "\n"
    assert text == apply_chat_template(history, False, False)
    encoded = tokenizer(text, return_offsets_mapping=True)
    mask = [
        any(a < e and s < b for s, e in spans) for a, b in encoded["offset_mapping"]
    ]
    return encoded["input_ids"], mask


CONVERSATIONS = {
    "one turn": [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "What is 12 + 7?"},
        {"role": REASONING_ROLE, "content": "12 + 7\nones: 2+7=9 -> 9\ntens: 1+0=1 -> 19\nresult: 19"},
        {"role": "assistant", "content": "12 + 7 = 19"},
    ],
    "multi-turn": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": REASONING_ROLE, "content": "A greeting."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "9-12"},
        {"role": REASONING_ROLE, "content": "9 < 12, so -(12 - 9)"},
        {"role": "assistant", "content": "9 - 12 = -3"},
        {"role": "user", "content": "and again?"},
        {"role": REASONING_ROLE, "content": "Same."},
        {"role": "assistant", "content": "9 - 12 = -3"},
    ],
    "CJK": [
        {"role": "system", "content": "你是一个有用的助手"},
        {"role": "user", "content": "在模型中加入特殊标记是什么意思？"},
        {"role": REASONING_ROLE, "content": "用户问的是词表。先解释 <|reasoning|> 的作用。"},
        {"role": "assistant", "content": "加入词表能让模型更好地识别推理部分的边界。😀"},
    ],
    "empty reasoning": [
        {"role": "user", "content": "hello"},
        {"role": REASONING_ROLE, "content": ""},
        {"role": "assistant", "content": ""},
    ],
    "leading newlines and spaces": [
        {"role": "system", "content": "\n\nsys"},
        {"role": "user", "content": "  q\n"},
        {"role": REASONING_ROLE, "content": "\n\n  indented\n\n"},
        {"role": "assistant", "content": "   \nanswer\n"},
    ],
}


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_mask_matches_character_spans_qwen(name: str, qwen_prepared) -> None:
    history = CONVERSATIONS[name]
    ids, expected = expected_mask(history, qwen_prepared)
    assert create_answer_mask(ids, qwen_prepared) == expected


@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_mask_matches_character_spans_demo(name: str, demo_tokenizer) -> None:
    history = CONVERSATIONS[name]
    ids, expected = expected_mask(history, demo_tokenizer)
    assert create_answer_mask(ids, demo_tokenizer) == expected


def test_mask_token_by_token_qwen(qwen_prepared) -> None:
    """Spelled out for a short conversation: exactly the content and <|im_end|> of the two trained turns."""
    history = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi"},
        {"role": REASONING_ROLE, "content": "ok"},
        {"role": "assistant", "content": "yes"},
    ]
    tok = qwen_prepared
    ids = tok(apply_chat_template(history, False, False))["input_ids"]
    pairs = list(zip(tok.convert_ids_to_tokens(ids), create_answer_mask(ids, tok), strict=True))
    assert pairs == [
        ("<|im_start|>", False), ("system", False), ("Ċ", False), ("S", False), ("<|im_end|>", False),
        ("Ċ", False),
        ("<|im_start|>", False), ("user", False), ("Ċ", False), ("hi", False), ("<|im_end|>", False),
        ("Ċ", False),
        ("<|im_start|>", False), ("<|reasoning|>", False), ("Ċ", False), ("ok", True),
        ("<|im_end|>", True), ("Ċ", False),
        ("<|im_start|>", False), ("assistant", False), ("Ċ", False), ("yes", True),
        ("<|im_end|>", True), ("Ċ", False),
    ]  # fmt: skip
    assert tok.convert_tokens_to_ids("<|reasoning|>") == 151665


def test_mask_token_by_token_demo(demo_tokenizer) -> None:
    tok = demo_tokenizer
    history = [
        {"role": "user", "content": "7-9"},
        {"role": REASONING_ROLE, "content": ""},
        {"role": "assistant", "content": "7 - 9 = -2"},
    ]
    ids = tok(apply_chat_template(history, False, False))["input_ids"]
    mask = create_answer_mask(ids, tok)
    tokens = tok.convert_ids_to_tokens(ids)
    trained = [t for t, m in zip(tokens, mask, strict=True) if m]
    # empty reasoning: only its <|im_end|>; then the answer's text and <|im_end|>
    assert trained[0] == IM_END
    assert tok.convert_tokens_to_string(trained[1:-1]) == "7 - 9 = -2"
    assert trained[-1] == IM_END
    assert sum(mask) == len(trained)
    assert tokens.count("<|reasoning|>") == 1


def test_mask_ignores_text_outside_turns(demo_tokenizer) -> None:
    tok = demo_tokenizer
    ids = tok("stray text" + apply_chat_template([{"role": "assistant", "content": "a"}], False, False))[
        "input_ids"
    ]
    mask = create_answer_mask(ids, tok)
    assert not any(mask[:2])
    assert sum(mask) == 2  # "a" and <|im_end|>


def test_mask_needs_chatml_tokens() -> None:
    class NoChatML:
        unk_token = "<unk>"
        unk_token_id = 0

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [0]}  # everything it does not know is the unknown token

    with pytest.raises(ValueError, match="im_start"):
        create_answer_mask([1, 2, 3], NoChatML())


# -- prepare_conversation_template -------------------------------------------------------------------


def test_flat_example_gets_the_default_system_prompt() -> None:
    history = prepare_conversation_template({"question": "q", "reasoning": "r", "answer": "a"})
    assert history == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "q"},
        {"role": REASONING_ROLE, "content": "r"},
        {"role": "assistant", "content": "a"},
    ]


def test_flat_example_with_own_or_no_system() -> None:
    own = prepare_conversation_template({"system": "S", "question": "q", "reasoning": "", "answer": "a"})
    assert own[0] == {"role": "system", "content": "S"}
    none = prepare_conversation_template({"system": None, "question": "q", "reasoning": "r", "answer": "a"})
    assert [m["role"] for m in none] == ["user", REASONING_ROLE, "assistant"]


def test_messages_example_normalises_reasoning_role() -> None:
    messages = [
        {"role": "user", "content": "1"},
        {"role": "reasoning", "content": "r"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "2"},
        {"role": "<|reasoning|>", "content": "r2"},
        {"role": "assistant", "content": "b"},
    ]
    history = prepare_conversation_template({"messages": messages})
    assert [m["role"] for m in history] == ["user", REASONING_ROLE, "assistant"] * 2


@pytest.mark.parametrize(
    ("example", "message"),
    [
        ({"question": "q", "answer": "a"}, "missing field 'reasoning'"),
        ({"question": "q"}, "missing fields 'reasoning', 'answer'"),
        ({"question": 1, "reasoning": "r", "answer": "a"}, "'question' must be a string"),
        ({"question": "q", "reasoning": "r", "answer": "a", "system": 3}, "'system' must be"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
        ({"messages": [{"role": "user"}]}, "needs both"),
        ({"messages": [{"role": "assistant", "content": "a"}, {"role": "system", "content": "s"}]},
         "unexpected role"),
        ({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]},
         "nothing to learn|no reasoning or assistant"),
        ([1, 2], "must be a JSON object"),
    ],
)  # fmt: skip
def test_bad_examples(example, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        prepare_conversation_template(example)
