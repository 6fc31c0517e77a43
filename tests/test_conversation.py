"""The conversation model: lossless to and from the card's history, stage prompts, persistence form."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reasonchat.conversation import (
    STAGES,
    STOP_REASONS,
    TITLE_LENGTH,
    Conversation,
    StageStats,
    Turn,
    make_title,
)
from reasonchat.template import DEFAULT_SYSTEM_PROMPT, normalize_history
from tests.test_template import new_apply_chat_template


def m(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


SYS = m("system", DEFAULT_SYSTEM_PROMPT)


def card_stage_1(history: list[dict[str, str]]) -> str:
    """What the card's loop sends for stage 1 (its first call)."""
    return new_apply_chat_template(history, add_reasoning_generation_prompt=True)


def card_stage_2_as_written(history: list[dict[str, str]]) -> str:
    """What the card's loop sends for stage 2: the buggy call that asks for reasoning again."""
    return new_apply_chat_template(history, add_assistant_generation_prompt=True)


def intended_stage_2(history: list[dict[str, str]]) -> str:
    """The card's described flow, system → user → reasoning → assistant."""
    return new_apply_chat_template(
        history, add_reasoning_generation_prompt=False, add_assistant_generation_prompt=True
    )


# --- Lossless from_history / history ------------------------------------------------------------
VALID = {
    "empty": [],
    "system-only": [SYS],
    "pending-user": [SYS, m("user", "Q")],
    "no-system-pending-user": [m("user", "Q")],
    "reasoning-without-answer": [SYS, m("user", "Q"), m("<|reasoning|>", "R")],
    "answer-without-reasoning": [SYS, m("user", "Q"), m("assistant", "A")],
    "full-turn": [SYS, m("user", "Q"), m("<|reasoning|>", "R"), m("assistant", "A")],
    "no-system-full-turn": [m("user", "Q"), m("<|reasoning|>", "R"), m("assistant", "A")],
    "empty-strings": [m("system", ""), m("user", ""), m("<|reasoning|>", ""), m("assistant", "")],
    "empty-reasoning-only": [m("user", ""), m("<|reasoning|>", "")],
    "empty-answer-only": [m("user", "Q"), m("assistant", "")],
    "consecutive-users": [SYS, m("user", "Q1"), m("user", "Q2"), m("user", "Q3")],
    "mixed-turns": [
        SYS,
        m("user", "Q1"),
        m("<|reasoning|>", "R1"),
        m("assistant", "A1"),
        m("user", "Q2"),
        m("assistant", "A2"),
        m("user", "Q3"),
        m("<|reasoning|>", "R3"),
        m("user", "Q4"),
        m("user", "Q5"),
        m("<|reasoning|>", "R5"),
        m("assistant", "A5"),
        m("user", "Q6"),
    ],
    "alias": [SYS, m("user", "Q"), m("reasoning", "R"), m("assistant", "A")],
    "unicode-and-newlines": [
        m("system", "你好\n"),
        m("user", "🤔\n\n<|im_end|>"),
        m("reasoning", "\tstep\r\n"),
        m("assistant", "e\u0301 👩‍👩‍👧"),
    ],
}
VALID_CASES = pytest.mark.parametrize("history", list(VALID.values()), ids=list(VALID))


@VALID_CASES
def test_from_history_is_lossless(history: list[dict[str, str]]) -> None:
    conv = Conversation.from_history(history)
    assert conv.history() == normalize_history(history)
    # ... also through the saved form.
    again = Conversation.from_dict(json.loads(json.dumps(conv.to_dict())))
    assert again.history() == normalize_history(history)
    # ... and rendering it gives the card's bytes.
    for flags in ((True, False), (False, True)):
        assert new_apply_chat_template(conv.history(), *flags) == new_apply_chat_template(
            normalize_history(history), *flags
        )


def test_from_history_shapes() -> None:
    conv = Conversation.from_history(VALID["mixed-turns"])
    assert conv.system_prompt == DEFAULT_SYSTEM_PROMPT
    got = [(t.user, t.reasoning, t.answer) for t in conv.turns]
    assert got == [
        ("Q1", "R1", "A1"),
        ("Q2", None, "A2"),
        ("Q3", "R3", None),
        ("Q4", None, None),
        ("Q5", "R5", "A5"),
        ("Q6", None, None),
    ]
    assert [t.complete for t in conv.turns] == [True, True, False, False, True, False]


def test_absent_system_is_none_and_empty_system_is_kept() -> None:
    assert Conversation.from_history([m("user", "Q")]).system_prompt is None
    assert Conversation.from_history([m("system", ""), m("user", "Q")]).system_prompt == ""
    assert Conversation.from_history([m("system", ""), m("user", "Q")]).history()[0] == m("system", "")


def test_empty_string_differs_from_absent() -> None:
    with_empty = Conversation.from_history([m("user", "Q"), m("<|reasoning|>", ""), m("assistant", "")])
    absent = Conversation.from_history([m("user", "Q")])
    assert (with_empty.turns[0].reasoning, with_empty.turns[0].answer) == ("", "")
    assert (absent.turns[0].reasoning, absent.turns[0].answer) == (None, None)
    assert len(with_empty.history()) == 3
    assert len(absent.history()) == 1
    assert with_empty.turns[0].complete and not absent.turns[0].complete


def test_from_history_does_not_alias_the_input() -> None:
    history = [m("user", "Q"), m("assistant", "A")]
    out = Conversation.from_history(history).history()
    out[0]["content"] = "changed"
    assert history[0]["content"] == "Q"


def test_history_upto() -> None:
    conv = Conversation.from_history(VALID["mixed-turns"])
    assert conv.history(0) == [SYS]
    assert conv.history(1) == [SYS, m("user", "Q1"), m("<|reasoning|>", "R1"), m("assistant", "A1")]
    assert conv.history(len(conv.turns)) == conv.history()


def test_from_history_fields() -> None:
    conv = Conversation.from_history([m("user", "Q")], id="abc", title="Mine", model="demo")
    assert (conv.id, conv.title, conv.model) == ("abc", "Mine", "demo")


# --- Invalid shapes name the index ---------------------------------------------------------------
INVALID = {
    "assistant-first": ([m("assistant", "A")], 0),
    "reasoning-first": ([m("<|reasoning|>", "R")], 0),
    "assistant-after-system": ([SYS, m("assistant", "A")], 1),
    "reasoning-after-system": ([SYS, m("reasoning", "R")], 1),
    "two-reasoning": ([SYS, m("user", "Q"), m("<|reasoning|>", "R"), m("<|reasoning|>", "R")], 3),
    "two-reasoning-alias": ([m("user", "Q"), m("reasoning", "R"), m("<|reasoning|>", "R")], 2),
    "two-answers": ([SYS, m("user", "Q"), m("assistant", "A"), m("assistant", "B")], 3),
    "reasoning-after-answer": ([m("user", "Q"), m("assistant", "A"), m("<|reasoning|>", "R")], 2),
    "system-second": ([m("user", "Q"), m("system", "S")], 1),
    "two-systems": ([SYS, SYS, m("user", "Q")], 1),
    "system-late": ([SYS, m("user", "Q"), m("<|reasoning|>", "R"), m("assistant", "A"), SYS], 4),
    "unknown-role": ([SYS, m("user", "Q"), m("tool", "T")], 2),
    "content-none": ([SYS, {"role": "user", "content": None}], 1),
    "not-a-mapping": ([SYS, m("user", "Q"), "assistant: A"], 2),
}


@pytest.mark.parametrize(("history", "index"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_shape_raises_naming_the_index(history: list[Any], index: int) -> None:
    with pytest.raises(ValueError) as info:
        Conversation.from_history(history)
    assert f"message {index}" in str(info.value)
    assert f"message {index}0" not in str(info.value)


def test_invalid_shape_error_says_what_was_expected() -> None:
    with pytest.raises(ValueError, match=r"message 3: .*'<\|reasoning\|>'.*expected 'assistant' or 'user'"):
        Conversation.from_history(INVALID["two-reasoning"][0])
    with pytest.raises(ValueError, match=r"message 0: .*'assistant'.*expected 'system' or 'user'"):
        Conversation.from_history([m("assistant", "A")])


# --- Hypothesis: random valid histories ----------------------------------------------------------
texts = st.text(max_size=20)


@st.composite
def valid_histories(draw: st.DrawFn) -> list[dict[str, str]]:
    history = []
    if draw(st.booleans()):
        history.append(m("system", draw(texts)))
    for _ in range(draw(st.integers(0, 5))):
        history.append(m("user", draw(texts)))
        if draw(st.booleans()):
            history.append(m(draw(st.sampled_from(["<|reasoning|>", "reasoning"])), draw(texts)))
        if draw(st.booleans()):
            history.append(m("assistant", draw(texts)))
    return history


@given(history=valid_histories())
def test_property_lossless(history: list[dict[str, str]]) -> None:
    normalized = normalize_history(history)
    conv = Conversation.from_history(history)
    assert conv.history() == normalized
    assert Conversation.from_history(normalized).history() == normalized
    assert Conversation.from_dict(json.loads(json.dumps(conv.to_dict()))).history() == normalized
    assert len(conv.turns) == sum(1 for msg in normalized if msg["role"] == "user")


@given(history=valid_histories())
def test_property_stage_prompts_match_the_card(history: list[dict[str, str]]) -> None:
    normalized = normalize_history(history)
    conv = Conversation.from_history(history)
    user_positions = [i for i, msg in enumerate(normalized) if msg["role"] == "user"]
    for turn_index, pos in enumerate(user_positions):
        prefix = normalized[: pos + 1]
        assert conv.stage_prompt(turn_index, "reasoning") == card_stage_1(prefix)
        reasoning = conv.turns[turn_index].reasoning
        with_reasoning = [*prefix, m("<|reasoning|>", reasoning or "")]
        assert conv.stage_prompt(turn_index, "answer") == intended_stage_2(with_reasoning)


@given(history=valid_histories(), extra=st.sampled_from(["system", "assistant", "<|reasoning|>"]))
def test_property_invalid_continuation_names_its_index(
    history: list[dict[str, str]], extra: str
) -> None:
    normalized = normalize_history(history)
    last = normalized[-1]["role"] if normalized else None
    # After each last role, which next role is invalid? (system is only valid first.)
    invalid = {
        None: {"assistant", "<|reasoning|>"},
        "system": {"system", "assistant", "<|reasoning|>"},
        "user": {"system"},
        "<|reasoning|>": {"system", "<|reasoning|>"},
        "assistant": {"system", "assistant", "<|reasoning|>"},
    }[last]
    bad = [*history, m(extra, "x"), m("user", "after")]
    if extra in invalid:
        with pytest.raises(ValueError, match=rf"\bmessage {len(history)}\b"):
            Conversation.from_history(bad)
    else:
        assert Conversation.from_history(bad).history() == normalize_history(bad)


# --- Stage prompts -------------------------------------------------------------------------------
def test_stage_prompts_follow_the_card_loop_and_fix_its_stage_2() -> None:
    """Replay the card's chat loop and compare each prompt it builds with ours."""
    card_history: list[dict[str, str]] = [m("system", "You are a helpful assistant")]
    conv = Conversation.from_history(card_history)
    exchanges = [("What is 2+2?", "2+2=4", "4"), ("和 3 呢？", "4+3=7 🤔", "7"), ("", "", "")]
    for turn_index, (question, reasoning, answer) in enumerate(exchanges):
        card_history.append({"role": "user", "content": question})
        turn = conv.add_turn(question)
        stage_1 = card_stage_1(card_history)
        assert conv.stage_prompt(turn_index, "reasoning") == stage_1
        assert stage_1.endswith("<|im_start|>user\n" + question + "<|im_end|>\n<|im_start|><|reasoning|>\n")

        card_history.append({"role": "<|reasoning|>", "content": reasoning})
        turn.reasoning = reasoning
        stage_2 = conv.stage_prompt(turn_index, "answer")
        assert stage_2 == intended_stage_2(card_history)
        assert stage_2 == stage_1 + reasoning + "<|im_end|>\n<|im_start|>assistant\n"
        # The card's own second call asks for reasoning again; ours must not.
        buggy = card_stage_2_as_written(card_history)
        assert buggy.endswith("<|im_start|><|reasoning|>\n")
        assert stage_2 != buggy
        assert stage_2[: -len("<|im_start|>assistant\n")] == buggy[: -len("<|im_start|><|reasoning|>\n")]

        card_history.append({"role": "assistant", "content": answer})
        turn.answer = answer
        assert conv.history() == card_history


def test_stage_prompts_only_see_earlier_turns_and_the_current_one() -> None:
    conv = Conversation.from_history(
        [
            SYS,
            m("user", "Q0"),
            m("<|reasoning|>", "R0"),
            m("assistant", "A0"),
            m("user", "Q1"),
            m("<|reasoning|>", "R1"),
            m("assistant", "A1"),
            m("user", "Q2"),
            m("<|reasoning|>", "R2"),
            m("assistant", "A2"),
        ]
    )
    r1 = conv.stage_prompt(1, "reasoning")
    a1 = conv.stage_prompt(1, "answer")
    earlier = new_apply_chat_template(conv.history(1))[: -len("<|im_start|><|reasoning|>\n")]
    assert earlier.endswith("A0<|im_end|>\n")
    assert r1 == earlier + "<|im_start|>user\nQ1<|im_end|>\n<|im_start|><|reasoning|>\n"
    assert a1 == (
        earlier
        + "<|im_start|>user\nQ1<|im_end|>\n<|im_start|><|reasoning|>\nR1<|im_end|>\n"
        + "<|im_start|>assistant\n"
    )
    for later in ("A1", "Q2", "R2", "A2"):
        assert later not in r1 and later not in a1
    assert "R1" not in r1  # stage 1 never sees its own (retried) reasoning
    assert conv.stage_prompt(0, "reasoning") == new_apply_chat_template([SYS, m("user", "Q0")])
    assert conv.stage_prompt(2, "reasoning").startswith(a1 + "A1<|im_end|>\n")


def test_stage_prompt_without_system_prompt() -> None:
    conv = Conversation.from_history([m("user", "Q")])
    assert conv.stage_prompt(0, "reasoning") == "<|im_start|>user\nQ<|im_end|>\n<|im_start|><|reasoning|>\n"


def test_stage_prompt_does_not_change_the_conversation() -> None:
    conv = Conversation.from_history(VALID["mixed-turns"])
    before = conv.to_dict()
    for i in range(len(conv.turns)):
        for stage in STAGES:
            conv.stage_prompt(i, stage)
    assert conv.to_dict() == before


def test_stages_constant() -> None:
    assert STAGES == ("reasoning", "answer")
    assert set(STOP_REASONS) == {"eos", "budget", "answer_now", "cancelled", "error", "max_new_tokens"}


# --- Title -------------------------------------------------------------------------------------------
def test_title_from_the_first_user_message() -> None:
    conv = Conversation(system_prompt="S")
    assert conv.title == ""
    conv.add_turn("  What is\n2+2?\t ")
    assert conv.title == "What is 2+2?"
    conv.add_turn("second question")
    assert conv.title == "What is 2+2?"
    assert Conversation.from_history([SYS, m("user", "first"), m("user", "second")]).title == "first"


def test_title_is_sanitized_and_one_line() -> None:
    title = make_title("\x1b]52;c;ZXZpbA==\x07Hi\x1b[2J\x1b[31m there\r\n\x00next\u009b1;1Hline\u2028x")
    assert title == "Hi there nextline x"
    assert title.isprintable()


def test_title_truncation() -> None:
    assert make_title("x" * TITLE_LENGTH) == "x" * TITLE_LENGTH
    long = make_title("y" * (TITLE_LENGTH + 1))
    assert long == "y" * (TITLE_LENGTH - 1) + "…"
    assert len(long) == TITLE_LENGTH
    # No dangling space before the ellipsis.
    assert make_title("a" * (TITLE_LENGTH - 2) + " " + "b" * 10) == "a" * (TITLE_LENGTH - 2) + "…"
    assert make_title("中" * 100) == "中" * (TITLE_LENGTH - 1) + "…"


def test_title_of_an_empty_message() -> None:
    assert make_title("") == "(empty)"
    assert make_title(" \n\t\x1b[0m ") == "(empty)"


@given(st.text())
def test_property_title(text: str) -> None:
    title = make_title(text)
    assert 0 < len(title) <= TITLE_LENGTH
    assert title.splitlines() == [title]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in title)
    assert title == title.strip()


# --- Stats ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("new_tokens", "decode_s", "expected"),
    [
        (11, 2.0, 5.0),
        (2, 0.5, 2.0),
        (101, 4, 25.0),
        (1, 1.0, None),  # one token: all prefill, no decode speed
        (0, 1.0, None),
        (10, 0.0, None),
        (10, None, None),
    ],
)
def test_tokens_per_s(new_tokens: int, decode_s: float | None, expected: float | None) -> None:
    stats = StageStats(new_tokens=new_tokens, decode_s=decode_s, ttft_s=0.3)
    if expected is None:
        assert stats.tokens_per_s is None
    else:
        assert stats.tokens_per_s == pytest.approx(expected)


def full_conversation() -> Conversation:
    conv = Conversation(id="c0ffee", title="Sums", model="/models/demo", system_prompt="Be brief")
    turn = conv.add_turn("What is 2+2?")
    turn.reasoning = "2+2=4\n"
    turn.reasoning_stats = StageStats(
        prompt_tokens=20,
        cached_tokens=0,
        new_tokens=5,
        ttft_s=0.125,
        decode_s=0.5,
        stop_reason="eos",
        chunks=[(0.125, 1), (0.25, 3), (0.6251, 6)],
    )
    turn.answer = "4"
    turn.answer_stats = StageStats(
        prompt_tokens=28, cached_tokens=25, new_tokens=1, ttft_s=0.01, decode_s=0.0, stop_reason="eos",
        chunks=[(0.01, 1)],
    )
    cancelled = conv.add_turn("long one")
    cancelled.reasoning = "thinking…"
    cancelled.reasoning_stats = StageStats(
        prompt_tokens=40, new_tokens=3000, ttft_s=0.2, decode_s=30.5, stop_reason="max_new_tokens",
        chunks=[(0.2, 3)],
    )
    failed = conv.add_turn("oops")
    failed.reasoning = ""
    failed.reasoning_stats = StageStats(stop_reason="error", error="GenerationError: boom")
    interrupted = conv.add_turn("stop")
    interrupted.reasoning = "par"
    interrupted.reasoning_stats = StageStats(prompt_tokens=9, new_tokens=1, ttft_s=0.1, stop_reason="cancelled")
    return conv


def test_to_dict_from_dict_round_trip() -> None:
    conv = full_conversation()
    data = conv.to_dict()
    text = json.dumps(data)
    again = Conversation.from_dict(json.loads(text))
    assert again == conv
    assert again.to_dict() == data
    assert json.dumps(again.to_dict()) == text
    stats = again.turns[0].reasoning_stats
    assert stats is not None
    assert stats.chunks == [(0.125, 1), (0.25, 3), (0.6251, 6)]
    assert all(type(t) is float and type(n) is int for t, n in stats.chunks)
    assert again.turns[0].answer_stats == conv.turns[0].answer_stats
    assert again.turns[3].stats("reasoning").stop_reason == "cancelled"  # type: ignore[union-attr]
    assert again.turns[3].answer_stats is None


def test_to_dict_is_json_ready() -> None:
    data = full_conversation().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) >= {"id", "title", "created", "updated", "model", "system_prompt", "turns"}
    chunks = data["turns"][0]["reasoning_stats"]["chunks"]
    assert chunks == [[0.125, 1], [0.25, 3], [0.6251, 6]]


def test_from_dict_ignores_unknown_keys() -> None:
    conv = full_conversation()
    data = conv.to_dict()
    data["future"] = 1
    data["turns"][0]["future"] = 2
    data["turns"][0]["reasoning_stats"]["future"] = 3
    assert Conversation.from_dict(data) == conv


def test_from_dict_keeps_timestamps_and_ids() -> None:
    conv = full_conversation()
    conv.created, conv.updated = "2024-01-01T00:00:00.000+00:00", "2024-01-02T00:00:00.000+00:00"
    again = Conversation.from_dict(conv.to_dict())
    assert (again.id, again.created, again.updated) == (conv.id, conv.created, conv.updated)
    assert [t.created for t in again.turns] == [t.created for t in conv.turns]


def test_system_prompt_none_round_trips() -> None:
    conv = Conversation.from_history([m("user", "Q")])
    again = Conversation.from_dict(json.loads(json.dumps(conv.to_dict())))
    assert again.system_prompt is None
    assert again.history() == [m("user", "Q")]


def test_turn_accessors() -> None:
    stats = StageStats(stop_reason="eos")
    turn = Turn(user="Q", reasoning="R", answer=None, reasoning_stats=stats)
    assert turn.text("reasoning") == "R" and turn.text("answer") is None
    assert turn.stats("reasoning") is stats and turn.stats("answer") is None
    assert not turn.complete


BAD_DICTS = {
    "not-a-dict": [],
    "no-turns": {"id": "x"},
    "turns-not-list": {"turns": {}},
    "system-not-str": {"turns": [], "system_prompt": 3},
    "turn-not-dict": {"turns": ["Q"]},
    "turn-no-user": {"turns": [{"reasoning": "R"}]},
    "turn-user-none": {"turns": [{"user": None}]},
    "turn-answer-int": {"turns": [{"user": "Q", "answer": 4}]},
    "stats-not-dict": {"turns": [{"user": "Q", "reasoning_stats": "fast"}]},
    "stats-bad-stop": {"turns": [{"user": "Q", "reasoning_stats": {"stop_reason": "done"}}]},
    "stats-chunks-int": {"turns": [{"user": "Q", "reasoning_stats": {"chunks": 5}}]},
    "stats-chunks-null": {"turns": [{"user": "Q", "reasoning_stats": {"chunks": None}}]},
    "stats-chunk-triple": {"turns": [{"user": "Q", "reasoning_stats": {"chunks": [[1, 2, 3]]}}]},
    "stats-chunk-text": {"turns": [{"user": "Q", "reasoning_stats": {"chunks": [["a", 2]]}}]},
    "stats-tokens-str": {"turns": [{"user": "Q", "answer_stats": {"new_tokens": "many"}}]},
    "stats-tokens-float": {"turns": [{"user": "Q", "answer_stats": {"prompt_tokens": 1.5}}]},
    "stats-tokens-null": {"turns": [{"user": "Q", "answer_stats": {"cached_tokens": None}}]},
    "stats-tokens-bool": {"turns": [{"user": "Q", "answer_stats": {"new_tokens": True}}]},
    "stats-decode-str": {"turns": [{"user": "Q", "answer_stats": {"decode_s": "2"}}]},
    "stats-ttft-list": {"turns": [{"user": "Q", "answer_stats": {"ttft_s": [0.1]}}]},
    "stats-error-int": {"turns": [{"user": "Q", "answer_stats": {"error": 500}}]},
}


@pytest.mark.parametrize("data", list(BAD_DICTS.values()), ids=list(BAD_DICTS))
def test_from_dict_rejects_bad_data_with_value_error(data: Any) -> None:
    # File-originated data (an imported export) must fail with one clear ValueError, never load a
    # record that crashes later (e.g. ``tokens_per_s`` on a string token count).
    with pytest.raises(ValueError) as info:
        Conversation.from_dict(data)
    if isinstance(data, dict) and isinstance(data.get("turns"), list) and data["turns"]:
        assert "turn 0" in str(info.value)


def test_stage_stats_from_dict_rejects_bad_data_with_value_error() -> None:
    for bad in ({"chunks": 5}, {"chunks": None}, {"new_tokens": "3"}, {"decode_s": "1"}, [], None):
        with pytest.raises(ValueError):
            StageStats.from_dict(bad)  # type: ignore[arg-type]


def test_stage_stats_from_dict_accepts_ints_for_seconds() -> None:
    stats = StageStats.from_dict({"ttft_s": 1, "decode_s": 2, "new_tokens": 5, "chunks": [[1, 2]]})
    assert stats.tokens_per_s == 2.0
    assert stats.chunks == [(1.0, 2)]


# --- Hypothesis: full records round-trip ---------------------------------------------------------
floats = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
counts = st.integers(0, 40000)
stats_strategy = st.builds(
    StageStats,
    prompt_tokens=counts,
    cached_tokens=counts,
    new_tokens=counts,
    ttft_s=st.none() | floats,
    decode_s=st.none() | floats,
    stop_reason=st.none() | st.sampled_from(STOP_REASONS),
    error=st.none() | texts,
    chunks=st.lists(st.tuples(floats, counts), max_size=5),
)
turn_strategy = st.builds(
    Turn,
    user=texts,
    reasoning=st.none() | texts,
    answer=st.none() | texts,
    reasoning_stats=st.none() | stats_strategy,
    answer_stats=st.none() | stats_strategy,
    created=st.text(min_size=1, max_size=30),
)
conversation_strategy = st.builds(
    Conversation,
    id=st.text(min_size=1, max_size=12),
    title=st.text(min_size=1, max_size=30),
    created=st.text(min_size=1, max_size=30),
    updated=st.text(min_size=1, max_size=30),
    model=texts,
    system_prompt=st.none() | texts,
    turns=st.lists(turn_strategy, max_size=4),
)


@given(conv=conversation_strategy)
def test_property_to_dict_from_dict_round_trip(conv: Conversation) -> None:
    again = Conversation.from_dict(json.loads(json.dumps(conv.to_dict())))
    assert again == conv
    assert again.history() == conv.history()
