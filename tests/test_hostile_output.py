"""Hostile text and hostile output targets (issue 12, items 2, 3 and 5).

Machine output escapes every control character and never carries a lone surrogate; a lone surrogate
from a model or a file is made valid where it enters, so the turn is saved; exports never replace what
is not a regular file; a stdout that fails ends any command with one line and exit code 1, and ``ask``
still saves its turn.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reasonchat import transfer
from reasonchat.cli import main
from reasonchat.conversation import Conversation
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.engine.turn import TurnRunner
from reasonchat.store import Store
from reasonchat.unicode_text import REPLACEMENT, StreamValidator, valid_text

# An 8-bit CSI, DEL, NEL and an 8-bit OSC 52 (clipboard write) ended by an 8-bit ST.
C1_TEXT = "red\x9b31m\x7f next\x85 line \x9d52;c;ZXZpbA==\x9c done"
# What a server's JSON ("\udc9b") or a non-UTF-8 stdin gives: stdout's surrogateescape writes 0x9B.
SURROGATE_TEXT = "think \udc9b31m hard \ud800 now"
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # what no machine output may hold


def scripted(monkeypatch: pytest.MonkeyPatch, reasoning: str, answer: str) -> None:
    from reasonchat.cli import ask_command

    backend = ScriptedBackend(lambda request: reasoning if request.stage == "reasoning" else answer)
    monkeypatch.setattr(ask_command, "open_selected_backend", lambda args, progress=None: backend)


def saved_turn() -> Any:
    with Store.open() as store:
        (summary,) = store.list()
        return store.get(summary.id).turns[0]


# --- item 2: machine output escapes every control character --------------------------------------


def test_ask_json_escapes_c1_and_del_and_keeps_the_text(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, C1_TEXT, "ok")
    assert main(["ask", "--json", "--no-save", "hi"]) == 0
    out = capsysbinary.readouterr().out.decode("utf-8")
    assert UNSAFE.search(out) is None and json.loads(out)["reasoning"] == C1_TEXT


def test_config_json_escapes_c1(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONCHAT_SYSTEM_PROMPT", C1_TEXT)
    assert main(["config", "--json"]) == 0
    assert UNSAFE.search(capsysbinary.readouterr().out.decode("utf-8")) is None


def test_canonical_json_never_writes_a_lone_surrogate_yet_parses_back_exactly() -> None:
    text = transfer.canonical_json({"text": SURROGATE_TEXT + C1_TEXT})
    assert UNSAFE.search(text) is None and json.loads(text)["text"] == SURROGATE_TEXT + C1_TEXT


@pytest.mark.parametrize("format_name", ["json", "history"])
def test_json_exports_escape_controls_and_keep_the_exact_text(
    capsysbinary: pytest.CaptureFixture[bytes], format_name: str
) -> None:
    conv = Conversation(system_prompt=C1_TEXT)
    conv.add_turn("q").reasoning = C1_TEXT
    with Store.open() as store:
        store.save(conv)
    assert main(["export", conv.id, "--format", format_name]) == 0
    out = capsysbinary.readouterr().out.decode("utf-8")
    assert UNSAFE.search(out) is None and out.count(json.dumps(C1_TEXT)) == 2


# --- item 3: lone surrogates are made valid where they enter --------------------------------------


def test_valid_text_joins_pairs_and_replaces_lone_surrogates() -> None:
    assert valid_text("a\ud83d\ude00b\udc9bc\ud800") == f"a\U0001f600b{REPLACEMENT}c{REPLACEMENT}"


def test_a_surrogate_pair_split_across_chunks_is_joined_not_lost() -> None:
    stream = StreamValidator()
    assert [stream.feed("a\ud83d"), stream.feed("\ude00b\udbff"), stream.flush()] == [
        "a", "\U0001f600b", REPLACEMENT,
    ]  # fmt: skip


def test_ask_saves_a_turn_whose_stream_holds_lone_surrogates(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, SURROGATE_TEXT, "answer \udc9d")
    assert main(["ask", "--json", "hi"]) == 0
    turn = saved_turn()
    assert (turn.reasoning, turn.answer) == (valid_text(SURROGATE_TEXT), f"answer {REPLACEMENT}")


def test_ask_json_output_carries_no_surrogate_nor_its_raw_byte(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, SURROGATE_TEXT, "ok")
    assert main(["ask", "--json", "--no-save", "hi"]) == 0
    out = capsysbinary.readouterr().out
    assert json.loads(out.decode("utf-8"))["reasoning"] == valid_text(SURROGATE_TEXT)


def test_a_stage_error_quoting_a_surrogate_is_saved_valid() -> None:
    class Failing(ScriptedBackend):
        def stream(self, request: Any) -> Any:
            inner = super().stream(request)

            class Stream:
                stats = inner.stats

                def __iter__(self) -> Any:
                    yield "partial \ud83d"
                    raise RuntimeError("server said \udc9b")

            return Stream()

    conv = Conversation()
    conv.add_turn("q")
    turn = TurnRunner(Failing()).run(conv)
    assert (turn.reasoning, turn.reasoning_stats.error) == (
        f"partial {REPLACEMENT}", f"RuntimeError: server said {REPLACEMENT}",
    )  # fmt: skip


def test_import_of_a_file_with_lone_surrogate_escapes_saves_it_valid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hostile.json"
    path.write_text('[{"role": "user", "content": "hi \\ud800"}, {"role": "assistant", "content": "\\udc9b"}]')
    assert main(["import", str(path)]) == 0
    turn = saved_turn()
    assert (turn.user, turn.answer) == (f"hi {REPLACEMENT}", REPLACEMENT)


# --- item 5: exports never replace what is not a regular file ------------------------------------


@pytest.fixture
def saved_id() -> str:
    conv = Conversation()
    conv.add_turn("question").answer = "answer"
    with Store.open() as store:
        store.save(conv)
    return conv.id


def test_export_to_a_fifo_writes_into_it(tmp_path: Path, saved_id: str) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there: the writer does not block
    try:
        assert main(["export", saved_id, "-o", str(fifo)]) == 0
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and b"question" in received


def test_export_refuses_a_symlink_and_leaves_it_and_its_target_alone(
    tmp_path: Path, saved_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target.md"
    target.write_text("mine")
    link = tmp_path / "link.md"
    link.symlink_to(target)
    assert main(["export", saved_id, "-o", str(link)]) == 2
    assert (link.is_symlink(), target.read_text()) == (True, "mine")
    assert "symbolic link" in capsys.readouterr().err


@pytest.mark.parametrize(("minor", "code"), [(3, 0), (7, 2)])  # /dev/null takes it; /dev/full fails
def test_export_to_a_character_device_writes_in_place_and_never_replaces_it(
    tmp_path: Path, saved_id: str, minor: int, code: int
) -> None:
    device = tmp_path / "device"  # our own node, so the machine's /dev is never at risk
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("making a device node needs root (CAP_MKNOD)")
    if os.statvfs(tmp_path).f_flag & os.ST_NODEV:
        pytest.skip("the temporary directory is mounted nodev")
    assert main(["export", saved_id, "-o", str(device)]) == code
    assert stat.S_ISCHR(device.lstat().st_mode)


def test_export_to_a_new_path_and_over_a_regular_file_is_atomic_and_private(tmp_path: Path, saved_id: str) -> None:
    path = tmp_path / "out.md"
    path.write_text("old")
    assert main(["export", saved_id, "-o", str(path)]) == 0
    assert "question" in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600


# --- item 5: a stdout that fails ------------------------------------------------------------------

ASK_SCRIPT = textwrap.dedent(
    """
    import sys
    from reasonchat.cli import ask_command, main
    from reasonchat.engine.scripted import ScriptedBackend

    text = "word " * 500  # Rich flushes each chunk: the first one already fails
    # Slow enough that a reader who leaves after a few bytes leaves mid-turn.
    backend = ScriptedBackend(lambda request: text, delay_s=0.001)
    ask_command.open_selected_backend = lambda args, progress=None: backend
    sys.exit(main(sys.argv[1:]))
    """
)


def run_cli(args: list[str], stdout: str, data_dir: Path, script: str | None = None) -> subprocess.CompletedProcess[str]:
    """``reasonchat ARGS`` with stdout ``/dev/full`` or closed, as a shell would leave it."""
    command = [sys.executable, *(["-c", script] if script else ["-m", "reasonchat"]), *args]
    redirect = "> /dev/full" if stdout == "full" else ">&-"
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(data_dir)}
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", *command],
        stderr=subprocess.PIPE, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("stdout", ["full", "closed"])
@pytest.mark.parametrize(
    "args", [["list", "--json"], ["config"], ["config", "--json"], ["--version"], ["export", "{id}"]]
)
def test_a_failing_stdout_is_one_line_and_exit_1(
    args: list[str], stdout: str, saved_id: str, isolated_dirs: Path
) -> None:
    result = run_cli([a.replace("{id}", saved_id) for a in args], stdout, isolated_dirs)
    assert (result.returncode, result.stderr.count("\n"), result.stderr.startswith("reasonchat: error: ")) == (
        1, 1, True,
    ), result.stderr  # fmt: skip


def test_ask_with_a_failing_stdout_still_saves_the_whole_turn(isolated_dirs: Path) -> None:
    result = run_cli(["ask", "hi"], "full", isolated_dirs, script=ASK_SCRIPT)
    assert (result.returncode, result.stderr.count("\n")) == (1, 1), result.stderr
    turn = saved_turn()
    assert (turn.reasoning, turn.answer, turn.answer_stats.stop_reason) == ("word " * 500,) * 2 + ("eos",)


def test_ask_whose_reader_leaves_ends_quietly_and_still_saves_the_whole_turn(isolated_dirs: Path) -> None:
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(isolated_dirs)}
    proc = subprocess.Popen(
        [sys.executable, "-c", ASK_SCRIPT, "ask", "hi"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(20)
    proc.stdout.close()  # ``| head -c 20``
    assert (proc.wait(timeout=120), proc.stderr.read()) == (0, b"")
    turn = saved_turn()
    assert (turn.reasoning, turn.answer, turn.answer_stats.stop_reason) == ("word " * 500,) * 2 + ("eos",)
