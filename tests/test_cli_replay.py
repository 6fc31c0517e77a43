"""``reasonchat replay ID|FILE``: everything that can be wrong is one line and exit 2 before the screen
is taken over, nothing is written (no database is ever created, a file is left as it was), and a replay
needs neither torch nor transformers."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.errors import StoreError, UserError
from reasonchat.store import Store
from reasonchat.transfer import canonical_json, to_json

UNKNOWN = "0123456789ab"


def timed_conversation(conv_id: str | None = None) -> Conversation:
    conv = Conversation(
        title="Sums",
        created="2025-03-01T09:00:00.000+00:00",
        updated="2025-03-01T09:05:00.000+00:00",
        model="scripted",
        turns=[
            Turn(
                user="What is 2+3?",
                reasoning="units: 2+3=5",
                answer="2 + 3 = 5",
                reasoning_stats=StageStats(
                    prompt_tokens=20, new_tokens=4, stop_reason="eos", chunks=[(0.1, 6), (0.2, 12)]
                ),
                answer_stats=StageStats(prompt_tokens=26, new_tokens=5, stop_reason="eos", chunks=[(0.1, 9)]),
                created="2025-03-01T09:00:00.000+00:00",
            ),
            Turn(
                user="And 4+4?", reasoning="units: 4+4=8", answer="8", created="2025-03-01T09:05:00.000+00:00"
            ),
        ],
    )
    if conv_id is not None:
        conv.id = conv_id
    return conv


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from reasonchat.cli import main

    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    assert err.startswith("reasonchat: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    return err[len("reasonchat: error: ") : -1]


def files_under(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def saved_store(data_dir: Path, *conversations: Conversation) -> Path:
    with Store.open(data_dir) as store:
        for conv in conversations:
            store.save(conv)
    return data_dir / "conversations.db"


def replay_args(target: str, speed: str = "1") -> argparse.Namespace:
    from reasonchat.cli import build_parser

    return build_parser().parse_args(["replay", target, "--speed", speed])


# --- the command line --------------------------------------------------------------------------


def test_the_command_line_parser_builds() -> None:
    from reasonchat.cli import build_parser

    args = build_parser().parse_args(["replay", "abc123", "--speed", "instant"])
    assert (args.target, args.speed, args.data_dir) == ("abc123", "instant", None)
    assert build_parser().parse_args(["replay", "x.json"]).speed == "1"


def test_an_unknown_id_on_a_fresh_machine_is_one_line_and_creates_no_database(
    capsys: pytest.CaptureFixture[str], isolated_dirs: Path
) -> None:
    code, out, err = run_main(capsys, "replay", UNKNOWN)
    assert (code, out) == (2, "")
    assert one_error_line(err) == f"no conversation with id '{UNKNOWN}' (and no file of that name)"
    assert not isolated_dirs.exists(), "replaying never creates the data directory or a database"


def test_an_unknown_id_in_a_store_is_one_line_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], isolated_dirs: Path
) -> None:
    saved_store(isolated_dirs, timed_conversation("aaaa00000001"))
    before = files_under(isolated_dirs)
    code, out, err = run_main(capsys, "replay", UNKNOWN)
    assert (code, out) == (2, "")
    assert one_error_line(err) == f"no conversation with id '{UNKNOWN}'"
    assert files_under(isolated_dirs) == before, "no -wal/-shm left behind, the database untouched"


def test_an_ambiguous_prefix_is_one_line(capsys: pytest.CaptureFixture[str], isolated_dirs: Path) -> None:
    saved_store(isolated_dirs, timed_conversation("aaaa00000001"), timed_conversation("aaaa00000002"))
    code, out, err = run_main(capsys, "replay", "aaaa")
    assert (code, out) == (2, "")
    assert "ambiguous" in one_error_line(err)


def test_the_data_dir_option_is_where_ids_are_looked_up(
    capsys: pytest.CaptureFixture[str], isolated_dirs: Path, tmp_path: Path
) -> None:
    chosen = tmp_path / "chosen"
    code, out, err = run_main(capsys, "--data-dir", str(chosen), "replay", UNKNOWN)
    assert (code, out) == (2, "")
    assert UNKNOWN in one_error_line(err)
    assert not chosen.exists() and not isolated_dirs.exists()


def test_a_missing_file_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], isolated_dirs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "gone.json"
    code, out, err = run_main(capsys, "replay", str(path))
    assert (code, out) == (2, "")
    assert one_error_line(err) == f"{path}: no such file"
    assert not isolated_dirs.exists()


BAD_FILES = {
    "truncated": to_json(timed_conversation())[:200].encode(),
    "not-json": b"hello, this is not JSON\n",
    "unknown-version": canonical_json(
        {"format": "reasonchat.conversation", "version": 99, "conversation": timed_conversation().to_dict()}
    ).encode(),
    "unknown-format": canonical_json({"format": "someone.else", "version": 1}).encode(),
    "not-utf8": b'[{"role": "user", "content": "\xff"}]',
    "bad-role": b'[{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]',
    "no-turns": b"[]",
}
EXPECTED = {
    "truncated": "invalid JSON",
    "not-json": "invalid JSON",
    "unknown-version": "reasonchat.conversation version 99 is not supported",
    "unknown-format": "not a history list or a reasonchat.conversation export",
    "not-utf8": "not UTF-8",
    "bad-role": "unknown role 'robot'",
    "no-turns": "no user message",
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_file_is_one_line_naming_it_and_is_left_unchanged(
    name: str, capsys: pytest.CaptureFixture[str], isolated_dirs: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{name}.json"
    path.write_bytes(BAD_FILES[name])
    mode = path.stat().st_mode
    code, out, err = run_main(capsys, "replay", str(path), "--speed", "instant")
    assert (code, out) == (2, "")
    line = one_error_line(err)
    assert line.startswith(str(path)) and EXPECTED[name] in line, line
    assert path.read_bytes() == BAD_FILES[name] and path.stat().st_mode == mode
    assert not isolated_dirs.exists()


def test_a_corrupt_store_is_one_line_naming_it_and_is_left_untouched(
    capsys: pytest.CaptureFixture[str], isolated_dirs: Path
) -> None:
    isolated_dirs.mkdir()
    database = isolated_dirs / "conversations.db"
    garbage = b"not a database at all" * 100
    database.write_bytes(garbage)
    code, out, err = run_main(capsys, "replay", UNKNOWN)
    # A store that cannot be used exits 1 like the other store commands (StoreError); a wrong id is 2.
    assert (code, out) == (StoreError.exit_code, "")
    line = one_error_line(err)
    assert str(database) in line and "not a usable reasonchat database" in line
    assert files_under(isolated_dirs) == {"conversations.db": garbage}


def test_an_empty_database_file_is_not_turned_into_a_database(
    capsys: pytest.CaptureFixture[str], isolated_dirs: Path
) -> None:
    isolated_dirs.mkdir()
    database = isolated_dirs / "conversations.db"
    database.write_bytes(b"")
    code, out, err = run_main(capsys, "replay", UNKNOWN)
    assert (code, out) == (2, "")
    assert UNKNOWN in one_error_line(err)
    assert files_under(isolated_dirs) == {"conversations.db": b""}


@pytest.mark.parametrize("speed", ["3", "0", "fast", ""])
def test_a_bad_speed_is_refused_by_the_parser(
    speed: str, capsys: pytest.CaptureFixture[str], isolated_dirs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "conv.json"
    path.write_text(to_json(timed_conversation()), "utf-8")
    before = path.read_bytes()
    with pytest.raises(SystemExit) as exited:
        run_main(capsys, "replay", str(path), "--speed", speed)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--speed" in err and "invalid choice" in err and "instant" in err
    assert path.read_bytes() == before and not isolated_dirs.exists()


def test_stdin_is_refused(isolated_dirs: Path) -> None:
    from reasonchat.cli.replay_command import load_target

    with pytest.raises(UserError, match="not stdin"):
        load_target("-", None)
    assert not isolated_dirs.exists()


def test_a_bad_target_through_a_real_process(isolated_dirs: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(b'{"format": "reasonchat.conversation", "version"')
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(isolated_dirs)}
    result = subprocess.run(
        [sys.executable, "-m", "reasonchat", "replay", str(path)],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, b"")
    assert (
        result.stderr.startswith(b"reasonchat: error: " + str(path).encode())
        and result.stderr.count(b"\n") == 1
    )
    assert b"\x1b" not in result.stderr, "the screen was never taken over"
    assert not isolated_dirs.exists()


# --- what is loaded ------------------------------------------------------------------------------


def test_an_id_and_a_unique_prefix_load_from_the_store_without_writing(isolated_dirs: Path) -> None:
    from reasonchat.cli.replay_command import load_target

    kept = timed_conversation("abcdef000001")
    saved_store(isolated_dirs, kept, timed_conversation("abc999000002"))
    before = files_under(isolated_dirs)
    for target in ("abcdef000001", "abcd"):
        conversation, source = load_target(target, None)
        assert conversation == kept and source == "abcdef00"
    assert files_under(isolated_dirs) == before


def test_an_ambiguous_prefix_is_a_user_error(isolated_dirs: Path) -> None:
    from reasonchat.cli.replay_command import load_target

    saved_store(isolated_dirs, timed_conversation("aaaa00000001"), timed_conversation("aaaa00000002"))
    with pytest.raises(UserError, match="ambiguous"):
        load_target("aaaa", None)


def test_an_unknown_id_creates_no_database(isolated_dirs: Path, tmp_path: Path) -> None:
    from reasonchat.cli.replay_command import load_target

    with pytest.raises(UserError, match="no conversation with id"):
        load_target(UNKNOWN, None)
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(UserError, match="no conversation with id"):
        load_target(UNKNOWN, str(elsewhere))
    assert not isolated_dirs.exists() and not elsewhere.exists()


def test_a_corrupt_store_is_a_store_error(isolated_dirs: Path) -> None:
    from reasonchat.cli.replay_command import load_target

    isolated_dirs.mkdir()
    database = isolated_dirs / "conversations.db"
    database.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreError, match="not a usable reasonchat database"):
        load_target(UNKNOWN, None)
    assert files_under(isolated_dirs) == {"conversations.db": b"\x00garbage" * 512}


def test_a_json_export_and_a_history_list_load_without_importing(isolated_dirs: Path, tmp_path: Path) -> None:
    from reasonchat.cli.replay_command import load_target

    conv = timed_conversation("feedbeef0001")
    export = tmp_path / "conv.json"
    export.write_text(to_json(conv), "utf-8")
    history = tmp_path / "card.history.json"
    history.write_text(canonical_json(conv.history()), "utf-8")
    before = files_under(tmp_path)

    loaded, source = load_target(str(export), None)
    assert loaded == conv and source == "conv.json", "the export keeps the recorded timing"
    from_history, source = load_target(str(history), None)
    assert source == "card.history.json"
    assert [(t.user, t.reasoning, t.answer) for t in from_history.turns] == [
        (t.user, t.reasoning, t.answer) for t in conv.turns
    ]
    assert files_under(tmp_path) == before and not isolated_dirs.exists()


def test_a_file_without_a_suffix_in_the_current_directory_is_a_file(
    isolated_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.cli.replay_command import load_target

    monkeypatch.chdir(tmp_path)
    Path("notes").write_text(json.dumps([{"role": "user", "content": "hi"}]), "utf-8")
    conversation, source = load_target("notes", None)
    assert [t.user for t in conversation.turns] == ["hi"] and source == "notes"
    assert not isolated_dirs.exists()


def test_build_replay_app_carries_the_conversation_speed_and_source(
    isolated_dirs: Path, tmp_path: Path
) -> None:
    from reasonchat.cli.replay_command import build_replay_app
    from reasonchat.tui.replay_app import ReplayApp

    conv = timed_conversation()
    path = tmp_path / "conv.json"
    path.write_text(to_json(conv), "utf-8")
    app = build_replay_app(replay_args(str(path), "4"))
    assert isinstance(app, ReplayApp)
    assert (app.conversation, app.speed, app.source) == (conv, 4.0, "conv.json")
    app = build_replay_app(replay_args(str(path), "instant"))
    assert app.speed == 0.0


def test_build_replay_app_reports_a_bad_target_before_any_screen(isolated_dirs: Path) -> None:
    from reasonchat.cli.replay_command import build_replay_app

    with pytest.raises(UserError):
        build_replay_app(replay_args(UNKNOWN))
    assert not isolated_dirs.exists()


# --- a real replay, in a process of its own ------------------------------------------------------

HEADLESS_REPLAY = """
import asyncio, sys
from reasonchat.cli import build_parser
from reasonchat.cli.replay_command import build_replay_app

app = build_replay_app(build_parser().parse_args(["replay", sys.argv[1], "--speed", "instant"]))

async def main():
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(1500):
            if getattr(app.screen, "finished", False):
                break
            await pilot.pause(0.02)
        screen = app.screen
        print("finished", screen.finished, screen.shown_turn)
        print("answer", screen.turn_view.pane("answer").text)
        print("transcript", len(screen.transcript._turns))
        await pilot.press("q")
        await pilot.pause()
    print("returned", app.return_code)

asyncio.run(main())
backends = {"reasonchat.engine.transformers_backend", "reasonchat.engine.openai_backend", "reasonchat.engine.loading"}
heavy = sorted(({"torch", "transformers", "httpx"} & {name.split(".")[0] for name in sys.modules}) | (backends & set(sys.modules)))
print("heavy", heavy)
"""


def test_a_file_replays_headless_to_the_end_without_torch_or_transformers(
    isolated_dirs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "conv.json"
    path.write_text(to_json(timed_conversation()), "utf-8")
    before = path.read_bytes()
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(isolated_dirs)}
    result = subprocess.run(
        [sys.executable, "-c", HEADLESS_REPLAY, str(path)],
        capture_output=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        "finished True 1",
        "answer 8",
        "transcript 1",
        "returned 0",
        "heavy []",
    ]
    assert path.read_bytes() == before
    assert not isolated_dirs.exists(), "a replay never creates a database"
