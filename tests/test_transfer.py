"""Export and import formats: canonical JSON, the card's history list, Markdown, and load errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonchat.conversation import Conversation, StageStats
from reasonchat.errors import UserError
from reasonchat.transfer import (
    canonical_json,
    load_bytes,
    load_file,
    to_history_json,
    to_json,
    to_markdown,
)

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
HISTORIES = {
    "multi-turn": [
        SYSTEM,
        {"role": "user", "content": "What is 2+2?"},
        {"role": "<|reasoning|>", "content": "units: 2+2=4"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
        {"role": "<|reasoning|>", "content": "units: 3+3=6"},
        {"role": "assistant", "content": "6"},
    ],
    "cjk-emoji-newlines": [
        SYSTEM,
        {"role": "user", "content": "你好，世界 😀\n第二行\r\n\ttab"},
        {"role": "<|reasoning|>", "content": "思考中…\n🤔 \"quoted\" \\ back"},
        {"role": "assistant", "content": "こんにちは 👋🏽"},
    ],
    "empty-contents": [
        {"role": "system", "content": ""},
        {"role": "user", "content": ""},
        {"role": "<|reasoning|>", "content": ""},
        {"role": "assistant", "content": ""},
    ],
    "no-system": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ],
    "trailing-user-without-reasoning": [
        SYSTEM,
        {"role": "user", "content": "first"},
        {"role": "<|reasoning|>", "content": "r"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "still waiting"},
    ],
    "reasoning-without-answer": [
        {"role": "user", "content": "q"},
        {"role": "<|reasoning|>", "content": "cut off here"},
    ],
    "terminal-controls": [
        {"role": "user", "content": "\x1b]52;c;aGk=\x07 \x00 \x7f \x85 \x9b31m"},
    ],
}


@pytest.mark.parametrize("name", HISTORIES)
def test_a_canonical_history_round_trips_byte_for_byte(name: str, tmp_path: Path) -> None:
    text = canonical_json(HISTORIES[name])
    path = tmp_path / "history.json"
    path.write_bytes(text.encode("utf-8"))

    conv = load_file(path)
    assert conv.history() == HISTORIES[name]
    assert to_history_json(conv) == text


@st.composite
def histories(draw: st.DrawFn) -> list[dict[str, str]]:
    history = [{"role": "system", "content": draw(st.text())}] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 3))):
        history.append({"role": "user", "content": draw(st.text())})
        for role in ("<|reasoning|>", "assistant"):
            if not draw(st.booleans()):
                break
            history.append({"role": role, "content": draw(st.text())})
    return history


@settings(max_examples=150, deadline=None)
@given(histories())
def test_any_history_round_trips_byte_for_byte(history: list[dict[str, str]]) -> None:
    text = canonical_json(history)
    assert to_history_json(load_bytes(text.encode("utf-8"), "h.json")) == text


def test_canonical_json_is_readable_and_safe_to_cat() -> None:
    text = canonical_json({"content": "中文 😀 é \n \x1b \x00 \x7f \x85 \x9f \xa0"})
    assert text == (
        '{\n  "content": "中文 😀 é \\n \\u001b \\u0000 \\u007f \\u0085 \\u009f \xa0"\n}\n'
    )
    assert json.loads(text) == {"content": "中文 😀 é \n \x1b \x00 \x7f \x85 \x9f \xa0"}


def conversation_with_stats() -> Conversation:
    conv = Conversation(model="demo/tiny", system_prompt="Be brief.")
    turn = conv.add_turn("What is 12+30?")
    turn.reasoning = "tens: 1+3=4\nunits: 2+0=2"
    turn.reasoning_stats = StageStats(20, 0, 9, 0.03, 0.2, "eos", None, [(0.03, 4), (0.2, 5)])
    turn.answer = "42"
    turn.answer_stats = StageStats(31, 29, 3000, 0.01, 9.5, "max_new_tokens", None, [(0.01, 2)])
    cancelled = conv.add_turn("\x1b[2JAnd \x1b]8;;http://x\x07this\x1b]8;;\x07?")
    cancelled.reasoning = ""
    cancelled.reasoning_stats = StageStats(stop_reason="error", error="out of\nmemory")
    return conv


def test_the_json_export_is_the_full_record() -> None:
    conv = conversation_with_stats()
    text = to_json(conv)
    data = json.loads(text)
    assert (data["format"], data["version"]) == ("reasonchat.conversation", 1)
    assert load_bytes(text.encode("utf-8"), "c.json") == conv
    assert text == canonical_json(data)


def test_markdown_shows_every_part_and_no_control_sequence() -> None:
    md = to_markdown(conversation_with_stats())
    assert md.startswith("# What is 12+30?\n")
    for part in ("`demo/tiny`", "Be brief.", "**User**", "> tens: 1+3=4\\\n> units: 2+0=2", "42"):
        assert part in md
    assert "*Answer stopped: max_new_tokens*" in md
    assert "*Reasoning stopped: error (out of memory)*" in md
    assert "stopped: eos" not in md
    assert "And this?" in md
    assert all(c.isprintable() or c == "\n" for c in md)


def test_a_byte_order_mark_is_accepted() -> None:
    text = canonical_json(HISTORIES["no-system"])
    assert load_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"), "h.json").history() == (
        HISTORIES["no-system"]
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe[]", r"^in\.json: not UTF-8 text"),
        (b'[\n  {"role": "user",\n   "content": "x",}\n]', r"^in\.json:3:19: invalid JSON"),
        (b'[{"role": "user", "content": "q"}, {"role": "bot", "content": "x"}]', "message 1"),
        (b'[{"role": "user", "content": 3}]', "message 0: content must be a string"),
        (b'[{"role": "assistant", "content": "a"}]', "message 0: unexpected role"),
        (b'{"messages": []}', "not a history list or a reasonchat.conversation export"),
        (b"42", "not a history list"),
        (b'{"format": "reasonchat.conversation", "version": 2}', "version 2 is not supported"),
        (b'{"format": "reasonchat.conversation", "version": 1, "conversation": {}}', "turns"),
        (b'[{"role": "system", "content": "only a system prompt"}]', "no user message"),
        (b"[]", "no user message"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        load_bytes(data, "in.json")
    assert "\n" not in str(caught.value) and "in.json" in str(caught.value)


def test_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load_file(tmp_path / "missing.json")
