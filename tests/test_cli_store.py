"""``reasonchat list/export/import/delete`` through a real subprocess, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasonchat.transfer import canonical_json, load_file, to_json
from tests.test_transfer import HISTORIES

ID = re.compile(r"[0-9a-f]{12}\n")


def reasonchat(
    *args: str, data_dir: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "reasonchat", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert (result.returncode, result.stderr) == (0, b"")
    return result.stdout.decode("utf-8")


def import_text(text: str, data_dir: Path, tmp_path: Path, name: str = "in.json") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    out = ok(reasonchat("import", str(path), data_dir=data_dir))
    assert ID.fullmatch(out), "import prints only the new id"
    return out.strip()


@pytest.mark.parametrize(
    "name", ["cjk-emoji-newlines", "multi-turn", "no-system", "trailing-user-without-reasoning"]
)
def test_import_then_export_history_is_byte_identical(
    name: str, isolated_dirs: Path, tmp_path: Path
) -> None:
    text = canonical_json(HISTORIES[name])
    conv_id = import_text(text, isolated_dirs, tmp_path)
    exported = reasonchat("export", conv_id[:6], "--format", "history", data_dir=isolated_dirs)
    assert (exported.returncode, exported.stderr) == (0, b"")
    assert exported.stdout == text.encode("utf-8")


def test_import_from_stdin_gets_a_fresh_id_each_time(isolated_dirs: Path) -> None:
    text = canonical_json(HISTORIES["multi-turn"]).encode("utf-8")
    first = ok(reasonchat("import", "-", data_dir=isolated_dirs, stdin=text))
    second = ok(reasonchat("import", "-", data_dir=isolated_dirs, stdin=text))
    assert ID.fullmatch(first) and ID.fullmatch(second) and first != second


def test_json_export_to_a_file_reimports_as_the_same_conversation(
    isolated_dirs: Path, tmp_path: Path
) -> None:
    conv_id = import_text(canonical_json(HISTORIES["cjk-emoji-newlines"]), isolated_dirs, tmp_path)
    out = tmp_path / "exports" / "conv.json"
    out.parent.mkdir()
    out.write_text("old contents")
    export = ("export", conv_id, "--format", "json", "-o", str(out))
    assert ok(reasonchat(*export, data_dir=isolated_dirs)) == ""
    assert [p.name for p in out.parent.iterdir()] == ["conv.json"], "no temporary file is left"
    original = load_file(out)
    assert original.id == conv_id and out.read_text("utf-8") == to_json(original)

    copy_id = ok(reasonchat("import", str(out), data_dir=isolated_dirs)).strip()
    copy_out = tmp_path / "copy.json"
    export = ("export", copy_id, "--format", "json", "-o", str(copy_out))
    ok(reasonchat(*export, data_dir=isolated_dirs))
    copy = load_file(copy_out)
    assert copy.id == copy_id != conv_id
    copy.id = conv_id
    assert copy == original


def test_list_json_schema_newest_first_and_search(isolated_dirs: Path, tmp_path: Path) -> None:
    older = import_text(canonical_json(HISTORIES["multi-turn"]), isolated_dirs, tmp_path)
    newer = import_text(canonical_json(HISTORIES["cjk-emoji-newlines"]), isolated_dirs, tmp_path)

    listed = json.loads(ok(reasonchat("list", "--json", data_dir=isolated_dirs)))
    assert [item["id"] for item in listed] == [newer, older]
    for item in listed:
        assert {"id", "title", "turns", "created", "updated", "model", "tokens"} <= item.keys()
        assert isinstance(item["turns"], int) and isinstance(item["tokens"], int)
    assert (listed[1]["title"], listed[1]["turns"]) == ("What is 2+2?", 2)

    found = json.loads(ok(reasonchat("list", "--json", "--search", "3+3", data_dir=isolated_dirs)))
    assert [item["id"] for item in found] == [older]
    assert "3+3" in found[0]["snippet"]


def test_list_table_shows_short_ids_and_safe_titles(isolated_dirs: Path, tmp_path: Path) -> None:
    history = [{"role": "user", "content": "\x1b]52;c;aGk=\x07Clipboard \x1b[31mred\x1b[0m"}]
    conv_id = import_text(canonical_json(history), isolated_dirs, tmp_path)
    table = ok(reasonchat("list", data_dir=isolated_dirs))
    header, row = table.splitlines()
    assert header.split() == ["ID", "UPDATED", "TURNS", "TITLE"]
    assert row.startswith(conv_id[:8] + " ") and row.endswith("Clipboard red")
    assert "\x1b" not in table


def test_delete_by_prefix(isolated_dirs: Path, tmp_path: Path) -> None:
    kept = import_text(canonical_json(HISTORIES["no-system"]), isolated_dirs, tmp_path)
    gone = import_text(canonical_json(HISTORIES["no-system"]), isolated_dirs, tmp_path)
    prefix = next(gone[:n] for n in range(1, 13) if not kept.startswith(gone[:n]))
    assert ok(reasonchat("delete", prefix, data_dir=isolated_dirs)) == f"deleted {gone}\n"
    listed = json.loads(ok(reasonchat("list", "--json", data_dir=isolated_dirs)))
    assert [item["id"] for item in listed] == [kept]


def test_the_data_dir_option_wins_over_the_environment(isolated_dirs: Path, tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    history = tmp_path / "h.json"
    history.write_text(canonical_json(HISTORIES["no-system"]), "utf-8")
    option = ("--data-dir", str(chosen))
    conv_id = ok(reasonchat(*option, "import", str(history), data_dir=isolated_dirs)).strip()
    assert (chosen / "conversations.db").exists() and not isolated_dirs.exists()
    listed = json.loads(ok(reasonchat(*option, "list", "--json", data_dir=isolated_dirs)))
    assert [item["id"] for item in listed] == [conv_id]


BAD_FILES = {
    "missing": None,
    "invalid-json": b'[{"role": "user", "content": "x"',
    "unknown-role": b'[{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]',
    "not-utf8": b'[{"role": "user", "content": "\xff"}]',
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_a_bad_import_exits_2_with_one_line_and_writes_nothing(
    name: str, isolated_dirs: Path, tmp_path: Path
) -> None:
    path = tmp_path / f"{name}.json"
    if BAD_FILES[name] is not None:
        path.write_bytes(BAD_FILES[name])
    result = reasonchat("import", str(path), data_dir=isolated_dirs)
    assert (result.returncode, result.stdout) == (2, b"")
    line = rb"reasonchat: error: [^\n]*" + re.escape(str(path).encode()) + rb"[^\n]*\n"
    assert re.fullmatch(line, result.stderr)
    assert not isolated_dirs.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("export", "0123456789ab"),
        ("export", "0123456789ab", "-o", "{tmp}/out.md"),
        ("delete", "0123456789ab"),
    ],
)
def test_an_unknown_id_exits_2_with_one_line_and_writes_nothing(
    args: tuple[str, ...], isolated_dirs: Path, tmp_path: Path
) -> None:
    argv = [a.format(tmp=tmp_path) for a in args]
    import_text(canonical_json(HISTORIES["no-system"]), isolated_dirs, tmp_path)
    database = isolated_dirs / "conversations.db"
    contents = database.read_bytes()
    result = reasonchat(*argv, data_dir=isolated_dirs)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == b"reasonchat: error: no conversation with id '0123456789ab'\n"
    assert database.read_bytes() == contents
    assert not (tmp_path / "out.md").exists()


def test_lookups_on_a_fresh_machine_create_no_database(isolated_dirs: Path) -> None:
    listed = reasonchat("list", "--json", data_dir=isolated_dirs)
    assert (listed.returncode, listed.stdout) == (0, b"[]\n")
    exported = reasonchat("export", "0123456789ab", data_dir=isolated_dirs)
    assert exported.returncode == 2
    assert not isolated_dirs.exists()


def test_export_into_a_missing_directory_exits_2(isolated_dirs: Path, tmp_path: Path) -> None:
    conv_id = import_text(canonical_json(HISTORIES["no-system"]), isolated_dirs, tmp_path)
    target = tmp_path / "no" / "such" / "dir.md"
    result = reasonchat("export", conv_id, "-o", str(target), data_dir=isolated_dirs)
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr.startswith(b"reasonchat: error: cannot write")
    assert result.stderr.count(b"\n") == 1


def test_a_corrupt_database_is_one_line_naming_the_file(isolated_dirs: Path) -> None:
    isolated_dirs.mkdir()
    database = isolated_dirs / "conversations.db"
    database.write_bytes(b"not a database at all" * 100)
    result = reasonchat("list", data_dir=isolated_dirs)
    assert (result.returncode, result.stdout) == (1, b"")
    assert str(database).encode() in result.stderr and result.stderr.count(b"\n") == 1
    assert database.read_bytes() == b"not a database at all" * 100


def test_the_store_commands_never_import_torch_transformers_or_textual(isolated_dirs: Path) -> None:
    code = (
        "import sys\n"
        "from reasonchat.cli import main\n"
        "assert main(['list', '--json']) == 0\n"
        "heavy = {'torch', 'transformers', 'textual'} & {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(heavy), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, env=dict(os.environ)
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, b"[]\n", b"[]\n")


def test_list_search_by_provenance_and_a_wrong_filter_in_one_line(isolated_dirs: Path) -> None:
    from reasonchat.conversation import Conversation, StageStats
    from reasonchat.store import Store

    conv = Conversation(title="steered")
    turn = conv.add_turn("cut short")
    turn.reasoning, turn.reasoning_stats = "half", StageStats(stop_reason="answer_now")
    other = Conversation(title="plain")
    other.add_turn("hello").reasoning = "hi"
    with Store.open(isolated_dirs) as store:
        store.save(conv)
        store.save(other)

    found = json.loads(ok(reasonchat("list", "--json", "--search", "stop:answer_now", data_dir=isolated_dirs)))
    assert [item["id"] for item in found] == [conv.id]
    result = reasonchat("list", "--search", "source:alien", data_dir=isolated_dirs)
    assert result.returncode != 0 and result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "reasonchat: error: unknown source 'alien' in the search (choose from model, edited, user, none)"
    ]
