"""The Jinja ``chat_template`` every checkpoint carries renders exactly ``reasonchat.template``'s bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonchat.chat_template import ANSWER_PROMPT_KWARG, CHAT_TEMPLATE
from reasonchat.template import ROLES, apply_chat_template


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_prepare_model import make_tiny_base, run_prepare, small_tokenizer

    root = tmp_path_factory.mktemp("chat-template")
    base = make_tiny_base(small_tokenizer(), root / "base")
    run_prepare(base, root / "prepared")
    return root / "prepared"


@pytest.fixture(scope="module")
def tokenizer(prepared_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(prepared_dir)


def test_prepare_model_writes_it_into_the_tokenizer_config(prepared_dir: Path, tokenizer) -> None:
    config = json.loads((prepared_dir / "tokenizer_config.json").read_text())
    assert config["chat_template"] == CHAT_TEMPLATE
    assert not (prepared_dir / "chat_template.jinja").exists()  # one place: the config
    assert tokenizer.chat_template == CHAT_TEMPLATE


# Content that would break a naive template: quotes, Jinja syntax, backslashes, ChatML text, newlines.
piece = st.sampled_from(list("ab \n\t'\"\\{}%#<|>_-é你😀")) | st.sampled_from(
    ["{{", "}}", "{%", "%}", "<|im_end|>", "<|im_start|>", "<|reasoning|>", "\\n", "{#"]
)
content = st.lists(piece, max_size=20).map("".join) | st.text(max_size=20)
message = st.fixed_dictionaries(
    {"role": st.sampled_from([*ROLES, "reasoning"]), "content": content}
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(message, min_size=1, max_size=8), prompt=st.sampled_from(["none", "reasoning", "answer"]))
def test_same_bytes_as_reasonchat_template(tokenizer, history: list[dict[str, str]], prompt: str) -> None:
    rendered = tokenizer.apply_chat_template(
        history, tokenize=False, add_generation_prompt=prompt != "none",
        **({ANSWER_PROMPT_KWARG: True} if prompt == "answer" else {}),
    )  # fmt: skip
    assert rendered == apply_chat_template(
        history,
        add_reasoning_generation_prompt=prompt == "reasoning",
        add_assistant_generation_prompt=prompt == "answer",
    )


def test_default_generation_prompt_is_the_reasoning_stage(tokenizer) -> None:
    history = [{"role": "user", "content": "What is 12 + 7?"}]
    assert tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True).endswith(
        "<|im_start|><|reasoning|>\n"
    )
    history.append({"role": "<|reasoning|>", "content": "12 + 7 ..."})
    stage2 = tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True, answer_prompt=True)
    assert stage2.endswith("<|im_end|>\n<|im_start|>assistant\n")
    # the ids a server would feed the model are the engine's: tokenizer(text)
    ids = tokenizer.apply_chat_template(history, tokenize=True, add_generation_prompt=True, answer_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert list(ids) == tokenizer(apply_chat_template(history, False, True))["input_ids"]


def test_reasoning_fields_of_other_tools_render_as_the_reasoning_turn(tokenizer) -> None:
    ours = [{"role": "user", "content": "q"}, {"role": "<|reasoning|>", "content": "r"},
            {"role": "assistant", "content": "a"}]  # fmt: skip
    for field in ("reasoning_content", "reasoning"):
        theirs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", field: "r"}]
        assert tokenizer.apply_chat_template(theirs, tokenize=False) == apply_chat_template(ours, False)


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([{"role": "robot", "content": "x"}], "message 0: unknown role robot"),
        ([{"role": "user", "content": "x"}, {"role": "user"}], "message 1: needs both"),
        ([{"role": "user", "content": 3}], "message 0: content must be a string"),
    ],
)
def test_bad_messages_raise_naming_the_message(tokenizer, history, message: str) -> None:
    with pytest.raises(Exception, match=message):
        tokenizer.apply_chat_template(history, tokenize=False)
