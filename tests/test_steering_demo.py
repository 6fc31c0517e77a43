"""Steering the stages on the shipped demo model, through the real engine and the CLI.

The demo model's answer stage reads the reasoning: "What is 482 + 1937?" reasons to 2419 and answers
it; a reasoning edited to say 3000 is answered with 3000; a reasoning cut early gets an answer from the
cut text. So these tests show that each operation changes what the answer stage sees.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from reasonchat.cli import main
from reasonchat.conversation import Conversation
from reasonchat.demo_model import is_available, model_dir
from reasonchat.engine.protocol import StageRequest
from reasonchat.session import ChatSession
from reasonchat.settings import GenerationSettings
from reasonchat.store import Store
from reasonchat.template import apply_chat_template

pytestmark = pytest.mark.skipif(not is_available(), reason="the demo model's weights are not built")

QUESTION = "What is 482 + 1937?"
SETTINGS = GenerationSettings(max_new_tokens=200)


@pytest.fixture(scope="module")
def backend():
    from reasonchat.engine.transformers_backend import load_backend

    loaded = load_backend(model_dir(), device="cpu", threads=1)
    yield loaded
    loaded.close()


def to_3000(reasoning: str) -> str:
    """The model's reasoning with its last two lines' totals made 3000."""
    *work, last_column, _result = reasoning.split("\n")
    return "\n".join([*work, last_column.rsplit(" ", 1)[0] + " 3000", "result: 3000"])


def test_a_reasoning_edited_to_say_3000_gives_an_answer_with_3000(backend: Any) -> None:
    session = ChatSession(backend, Conversation(), settings=SETTINGS)
    turn = session.ask(QUESTION)
    assert turn.answer == "482 + 1937 = 2419"
    model_reasoning = turn.reasoning
    turn = session.reanswer(to_3000(model_reasoning))
    assert turn.answer == "482 + 1937 = 3000"
    assert (turn.reasoning_source, turn.original_reasoning, turn.original_answer) == (
        "edited", model_reasoning, "482 + 1937 = 2419"
    )
    # Only the answer was generated again, and from the first changed token on.
    stats = turn.answer_stats
    assert stats.cached_tokens > 0.8 * stats.prompt_tokens


def test_think_more_extends_a_budget_cut_reasoning_and_the_cache_serves_the_old_part(backend: Any) -> None:
    session = ChatSession(
        backend, Conversation(), settings=GenerationSettings(max_new_tokens=200, reasoning_tokens=8)
    )
    turn = session.ask(QUESTION)
    cut, cut_stats = turn.reasoning, turn.reasoning_stats
    assert cut_stats.stop_reason == "budget" and cut_stats.new_tokens == 8
    assert turn.answer  # answered from the cut reasoning all the same
    session.settings = SETTINGS
    turn = session.think_more()
    stats = turn.reasoning_stats
    assert turn.reasoning.startswith(cut) and len(turn.reasoning) > len(cut)
    assert turn.reasoning.endswith("result: 2419") and stats.stop_reason == "eos"
    assert turn.answer == "482 + 1937 = 2419"
    # The continuation's prompt holds the old prompt and reasoning; all of it but the token the
    # cache always leaves to prefill (and a re-split at the seam) came from the cache.
    assert stats.prompt_tokens >= cut_stats.prompt_tokens + cut_stats.new_tokens - 1
    assert stats.cached_tokens >= stats.prompt_tokens - 2
    assert (turn.original_reasoning, turn.reasoning_source) == (cut, "model")


def ask_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code = main(["ask", "--json", "--threads", "1", *args])
    data = json.loads(capsys.readouterr().out)
    assert code == 0, data
    return data


def test_ask_reasoning_tokens_8_cuts_the_reasoning_and_still_answers(capsys: pytest.CaptureFixture[str]) -> None:
    data = ask_json(capsys, "--reasoning-tokens", "8", QUESTION)
    reasoning = data["stages"]["reasoning"]
    assert reasoning["new_tokens"] <= 8 and reasoning["stop_reason"] == "budget"
    assert data["answer"].startswith("482 + ") and data["stages"]["answer"]["stop_reason"] == "eos"
    assert data["reasoning_source"] == "model"
    assert "482 + 1937".startswith(data["reasoning"])  # cut inside its first line


def test_ask_no_reasoning_sends_exactly_the_empty_reasoning_turn(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine.transformers_backend import TransformersBackend

    sent: list[StageRequest] = []
    stream = TransformersBackend.stream
    def spy(self: TransformersBackend, request: StageRequest) -> Any:
        sent.append(request)
        return stream(self, request)

    monkeypatch.setattr(TransformersBackend, "stream", spy)
    data = ask_json(capsys, "--no-reasoning", "--system", "S", QUESTION)
    assert [r.stage for r in sent] == ["answer"]
    expected = apply_chat_template(
        [
            {"role": "system", "content": "S"},
            {"role": "user", "content": QUESTION},
            {"role": "reasoning", "content": ""},
        ],
        add_reasoning_generation_prompt=False,
        add_assistant_generation_prompt=True,
    )
    assert sent[0].prompt == expected
    assert expected.endswith(f"{QUESTION}<|im_end|>\n<|im_start|><|reasoning|>\n<|im_end|>\n<|im_start|>assistant\n")
    assert (data["reasoning"], data["reasoning_source"], data["stages"]["reasoning"]) == ("", "none", None)
    assert "1937" not in data["answer"]  # without its reasoning the demo model does not do the sum


def test_ask_with_a_written_reasoning_from_a_file_or_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine = (
        "482 + 1937\nones: 2+7=9 -> 9\ntens: 8+3=11 -> 19\nhundreds: 4+9=13, +1=14 -> 419\n"
        "thousands: 0+1=1, +1=2 -> 3000\nresult: 3000"
    )
    data = ask_json(capsys, "--reasoning", mine, QUESTION)
    assert (data["reasoning"], data["reasoning_source"], data["answer"]) == (mine, "user", "482 + 1937 = 3000")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((mine + "\n").encode())))
    data = ask_json(capsys, "--reasoning-file", "-", QUESTION)
    assert (data["reasoning"], data["reasoning_source"]) == (mine, "user")
    with Store.open() as store:
        assert store.get(data["conversation_id"]).turns[0].reasoning_source == "user"
    assert main(["ask", "--reasoning-file", str(tmp_path / "missing"), QUESTION]) == 2
    assert "cannot read the reasoning file" in capsys.readouterr().err


def test_reanswer_command_from_the_saved_or_a_given_reasoning(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = ask_json(capsys, QUESTION)
    conv_id = first["conversation_id"]
    edited = tmp_path / "reasoning.txt"
    edited.write_text(to_3000(first["reasoning"]) + "\n")
    assert main(["reanswer", "--json", "--threads", "1", conv_id[:6], "--reasoning-file", str(edited)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["answer"], data["reasoning_source"]) == ("482 + 1937 = 3000", "edited")
    assert (data["original_reasoning"], data["original_answer"]) == (first["reasoning"], first["answer"])
    assert data["stages"]["reasoning"] is None  # an edit is no model stage; the model's is the first variant
    with Store.open() as store:
        turn = store.get(conv_id).turns[0]
    assert (turn.answer, turn.reasoning_source, turn.original_answer) == (
        "482 + 1937 = 3000", "edited", "482 + 1937 = 2419"
    )
    # Without --reasoning-file: from the saved reasoning; printed like ask.
    assert main(["reanswer", "--threads", "1", conv_id]) == 0
    assert capsys.readouterr().out == "Answer:\n482 + 1937 = 3000\n"
    assert main(["reanswer", "nope"]) == 2
