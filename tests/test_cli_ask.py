"""``reasonchat ask`` end to end on a tiny trained model: output modes, saving, continuing, refusals."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from reasonchat.cli import main
from reasonchat.sanitize import sanitize
from reasonchat.store import Store
from tests.helpers.engine_fixtures import (  # noqa: F401 (fixtures)
    byte_random_model_dir,
    byte_tokenizer_dir,
    stopping_model_dir,
)
from tests.helpers.models import ANSWER_TEXT, REASONING_TEXT

STAGE_KEYS = {
    "prompt_tokens", "cached_tokens", "new_tokens", "ttft_s", "decode_s", "tokens_per_s",
    "stop_reason", "error",
}  # fmt: skip


def ask_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["ask", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_ask_json_schema_and_the_saved_turn(capsys: pytest.CaptureFixture[str], stopping_model_dir: Path) -> None:
    data = ask_json(capsys, "--model", str(stopping_model_dir), "What is 2+2?")
    assert data["reasoning"] == REASONING_TEXT
    assert data["answer"] == ANSWER_TEXT
    assert set(data["stages"]) == {"reasoning", "answer"}
    for stage in data["stages"].values():
        assert set(stage) == STAGE_KEYS
        assert stage["stop_reason"] == "eos"
        assert stage["new_tokens"] > 0 and stage["ttft_s"] > 0
    answer = data["stages"]["answer"]
    # Stage 2 re-uses stage 1's cache: all but the reasoning's closing tokens are cached.
    assert answer["cached_tokens"] >= 0.8 * answer["prompt_tokens"]
    assert data["context"] == {"used": answer["prompt_tokens"] + answer["new_tokens"], "limit": 32000}
    with Store.open() as store:
        conv = store.get(data["conversation_id"])
    assert (conv.turns[0].reasoning, conv.turns[0].answer) == (REASONING_TEXT, ANSWER_TEXT)
    assert conv.turns[0].answer_stats.stop_reason == "eos"
    assert conv.turns[0].reasoning_stats.chunks, "chunk timings are recorded for replay"
    assert conv.model == str(stopping_model_dir)


def test_continue_adds_a_turn_with_the_history_in_the_prompt(
    capsys: pytest.CaptureFixture[str], stopping_model_dir: Path
) -> None:
    first = ask_json(capsys, "--model", str(stopping_model_dir), "hi")
    conv_id = first["conversation_id"]
    second = ask_json(capsys, "--model", str(stopping_model_dir), "--continue", conv_id[:6], "again?")
    assert second["conversation_id"] == conv_id
    first_prompt = first["stages"]["answer"]["prompt_tokens"] + first["stages"]["answer"]["new_tokens"]
    assert second["stages"]["reasoning"]["prompt_tokens"] > first_prompt
    with Store.open() as store:
        conv = store.get(conv_id)
    assert [t.user for t in conv.turns] == ["hi", "again?"]
    assert all(t.answer_stats.stop_reason == "eos" for t in conv.turns)


def test_no_save_stores_nothing(capsys: pytest.CaptureFixture[str], stopping_model_dir: Path, isolated_dirs: Path) -> None:
    data = ask_json(capsys, "--model", str(stopping_model_dir), "--no-save", "hi")
    assert data["saved"] is False
    assert not (isolated_dirs / "conversations.db").exists()


def test_plain_output_when_piped(capsys: pytest.CaptureFixture[str], stopping_model_dir: Path) -> None:
    assert main(["ask", "--model", str(stopping_model_dir), "hi"]) == 0
    out = capsys.readouterr().out
    assert out == f"Reasoning:\n{REASONING_TEXT}\n\nAnswer:\n{ANSWER_TEXT}\n"


def test_question_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stopping_model_dir: Path
) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("What is 2+2?\n"))
    data = ask_json(capsys, "--model", str(stopping_model_dir), "-")
    with Store.open() as store:
        assert store.get(data["conversation_id"]).turns[0].user == "What is 2+2?"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model", "hi"], "model path not found: /nonexistent/model"),
        (["--model", "{model}", "--context-limit", "20", "hi"], "leaves no room"),
        (["--model", "{model}", "--continue", "ffffffff", "hi"], "no conversation"),
        (["--model", "{model}", "   "], "the question is empty"),
        (["--model", "{model}", "--max-new-tokens", "0", "hi"], "--max-new-tokens"),
        (["--model", "{model}", "--temperature", "-1", "hi"], "temperature"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_store_nothing(
    capsys: pytest.CaptureFixture[str],
    stopping_model_dir: Path,
    isolated_dirs: Path,
    args: list[str],
    message: str,
) -> None:
    args = [a.replace("{model}", str(stopping_model_dir)) for a in args]
    assert main(["ask", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reasonchat: error: ") and message in lines[0]
    db = isolated_dirs / "conversations.db"
    if db.exists():
        with Store.open() as store:
            assert store.list() == []


def test_answer_stage_overflow_keeps_the_reasoning(
    capsys: pytest.CaptureFixture[str], stopping_model_dir: Path
) -> None:
    # Room for the reasoning prompt plus a few tokens, not for the answer prompt.
    assert main(["ask", "--model", str(stopping_model_dir), "--context-limit", "62", "--json", "hi"]) == 2
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["stages"]["reasoning"]["stop_reason"] == "budget"
    assert data["stages"]["answer"]["stop_reason"] == "error"
    assert "leaves no room" in captured.err
    with Store.open() as store:
        turn = store.get(data["conversation_id"]).turns[0]
    assert turn.reasoning and turn.answer_stats.stop_reason == "error"


def test_ctrl_c_saves_the_partial_turn_as_cancelled(byte_random_model_dir: Path, isolated_dirs: Path) -> None:
    # A random model never stops on its own: it generates until Ctrl+C.
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(isolated_dirs)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reasonchat", "ask", "--model", str(byte_random_model_dir),
         "--max-new-tokens", "20000", "--context-limit", "30000", "hi"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"Reasoning:\n"
        proc.stdout.read(20)  # the reasoning is streaming
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"cancelled" in err and b"Traceback" not in err
    with Store.open() as store:
        (summary,) = store.list()
        turn = store.get(summary.id).turns[0]
    assert turn.reasoning_stats.stop_reason == "cancelled"
    assert len(turn.reasoning) >= 20 and turn.answer is None



# A sequence whose parts arrive as separate chunks (the scripted backend streams whitespace-separated
# words, and an OSC payload or a CSI's intermediate may hold a space): sanitizing each chunk on its
# own would print "ZXZpbCBj..." and "q".
SPLIT_REASONING = "Think \x1b]52;c; ZXZpbCBjbGlwYm9hcmQ=\x07 hard."
SPLIT_ANSWER = "Cursor\x1b[1 q shape."


def test_a_sequence_split_across_streamed_chunks_never_reaches_stdout(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.cli import ask_command
    from reasonchat.engine.scripted import ScriptedBackend

    for text in (SPLIT_REASONING, SPLIT_ANSWER):  # the words ScriptedBackend streams
        words = re.findall(r"\S+\s*|\s+", text)
        assert "".join(sanitize(w) for w in words) != sanitize(text), "the test must split a sequence"
    backend = ScriptedBackend(lambda request: SPLIT_REASONING if request.stage == "reasoning" else SPLIT_ANSWER)
    monkeypatch.setattr(ask_command, "open_selected_backend", lambda args, progress=None: backend)
    assert main(["ask", "--no-save", "hi"]) == 0
    assert capsys.readouterr().out == "Reasoning:\nThink  hard.\n\nAnswer:\nCursor shape.\n"


def test_on_a_tty_only_our_own_styling_reaches_the_terminal() -> None:
    from rich.console import Console

    from reasonchat.cli.ask_command import Output
    from reasonchat.conversation import StageStats
    from reasonchat.engine.turn import StageFinished, TextChunk

    out = Output(json_mode=False)
    out.tty = True
    out.console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", soft_wrap=True)
    out.err = Console(file=io.StringIO(), force_terminal=True)
    for stage, chunks in (
        ("reasoning", ["a\x1b", "]52;c;ZXZp", "bCBj\x1b", "\\b"]),
        ("answer", ["x\x9b", "2", "J", "y\x1b["]),  # the answer ends inside a sequence
    ):
        for i, chunk in enumerate(chunks):
            out.event(TextChunk(0, stage, chunk, i + 1, 0.0))
        out.event(StageFinished(0, stage, "".join(chunks), StageStats(stop_reason="eos")))
    shown = out.console.file.getvalue()
    for leak in ("52;", "ZXZp", "bCBj", "\x1b]", "\x9b", "2J", "\x1b[\n"):
        assert leak not in shown
    # Once Rich's own dim and bold codes are taken out, what is left is exactly the sanitized text.
    assert sanitize(shown) == "Reasoning\nab\n\nAnswer\nxy\n"
