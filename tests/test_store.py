"""The SQLite store: round trips, search, concurrency, crashes, permissions and refusals."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from reasonchat import store as store_module
from reasonchat.conversation import Conversation, StageStats
from reasonchat.errors import StoreError, UserError
from reasonchat.store import SCHEMA_VERSION, Store


def rich_conversation() -> Conversation:
    """Three turns: complete with stats and chunk timings, cancelled reasoning, not yet answered."""
    conv = Conversation(model="demo/tiny-adder", system_prompt="Be brief.")
    first = conv.add_turn("What is 12+30? 中文 😀\nsecond line")
    first.reasoning = "tens: 1+3=4 -> 4\nunits: 2+0=2"
    first.reasoning_stats = StageStats(
        prompt_tokens=20,
        new_tokens=12,
        ttft_s=0.031,
        decode_s=0.2,
        stop_reason="eos",
        chunks=[(0.031, 5), (0.1 + 0.2, 7)],
    )
    first.answer = "42"
    first.answer_stats = StageStats(
        prompt_tokens=35, cached_tokens=33, new_tokens=2, ttft_s=0.01, decode_s=1e-3,
        stop_reason="eos", chunks=[(0.01, 2)],
    )
    second = conv.add_turn("Tell me more")
    second.reasoning = ""
    second.reasoning_stats = StageStats(prompt_tokens=40, stop_reason="cancelled")
    second.answer = ""
    second.answer_stats = StageStats(stop_reason="error", error="out of memory\non device")
    conv.add_turn("\x1b]52;c;aGk=\x07 a question still waiting")
    return conv


def database(data_dir: Path) -> Path:
    return data_dir / "conversations.db"


def assert_search_index_in_sync(path: Path) -> None:
    # rank=1 also compares the index with the content table (external content).
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")


@pytest.fixture
def store(isolated_dirs: Path) -> Iterator[Store]:
    with Store.open() as opened:
        yield opened


# --- round trips ---------------------------------------------------------------------------------


def test_a_saved_conversation_comes_back_field_for_field(store: Store) -> None:
    conv = rich_conversation()
    bare = Conversation(system_prompt=None)
    bare.add_turn("")
    store.save(conv)
    store.save(bare)

    assert store.get(conv.id) == conv
    assert store.get(bare.id) == bare
    with Store(store.path) as other:
        assert other.get(conv.id) == conv


def test_open_uses_the_data_dir_override_then_the_environment(
    isolated_dirs: Path, tmp_path: Path
) -> None:
    with Store.open() as default:
        assert default.path == database(isolated_dirs)
    with Store.open(tmp_path / "elsewhere") as explicit:
        assert explicit.path == database(tmp_path / "elsewhere")


def test_saving_again_replaces_the_turns_and_the_search_index(store: Store) -> None:
    conv = rich_conversation()
    store.save(conv)
    del conv.turns[1:]
    conv.turns[0].answer = "forty-two"
    store.save(conv)

    assert store.get(conv.id) == conv
    assert store.list(search="Tell me more") == []
    assert [s.id for s in store.list(search="forty")] == [conv.id]
    assert_search_index_in_sync(store.path)


def test_save_turn_writes_one_turn_while_it_streams(store: Store) -> None:
    conv = rich_conversation()
    store.save(conv)
    turn = conv.add_turn("and now?")
    for partial in ("Let", "Let me", "Let me think"):
        turn.reasoning = partial
        store.save_turn(conv, len(conv.turns) - 1)
        assert store.get(conv.id) == conv
    assert [s.id for s in store.list(search="me think")] == [conv.id]
    assert_search_index_in_sync(store.path)


def test_save_turn_fills_earlier_turns_never_saved(store: Store) -> None:
    conv = rich_conversation()
    store.save_turn(conv, 2)
    assert store.get(conv.id) == conv
    with pytest.raises(IndexError):
        store.save_turn(conv, 3)


def test_summaries_newest_first_with_turns_and_tokens(store: Store) -> None:
    old, new = rich_conversation(), rich_conversation()
    old.updated, new.updated = "2024-01-01T00:00:00.000+00:00", "2025-01-01T00:00:00.000+00:00"
    empty_stats = Conversation()
    empty_stats.add_turn("hi")
    empty_stats.updated = "2023-01-01T00:00:00.000+00:00"
    for conv in (old, empty_stats, new):
        store.save(conv)

    summaries = store.list()
    assert [s.id for s in summaries] == [new.id, old.id, empty_stats.id]
    # The latest stage with stats is turn 2's reasoning: a 40-token prompt, nothing generated.
    assert (summaries[0].turns, summaries[0].tokens, summaries[0].snippet) == (3, 40, None)
    assert (summaries[2].turns, summaries[2].tokens) == (1, 0)
    assert summaries[0].title == new.title and summaries[0].model == "demo/tiny-adder"
    assert [s.id for s in store.list(limit=2)] == [new.id, old.id]


def test_resolve_takes_an_exact_id_or_a_unique_prefix(store: Store) -> None:
    for conv_id in ("abc", "abcd12", "abce34", "f00"):
        conv = Conversation(id=conv_id)
        conv.add_turn("q")
        store.save(conv)
    assert store.resolve("abc") == "abc"
    assert store.resolve("abcd") == "abcd12"
    assert store.resolve("f") == "f00"
    with pytest.raises(UserError, match="ambiguous"):
        store.resolve("ab")
    with pytest.raises(UserError, match="no conversation"):
        store.resolve("zz")
    with pytest.raises(UserError):
        store.resolve("")


def test_rename_and_delete(store: Store) -> None:
    conv, other = rich_conversation(), rich_conversation()
    store.save(conv)
    store.save(other)
    store.rename(conv.id, "Adding numbers")
    assert store.get(conv.id).title == "Adding numbers"

    store.delete(conv.id)
    with pytest.raises(UserError, match="no conversation"):
        store.get(conv.id)
    assert [s.id for s in store.list()] == [other.id]
    assert [s.id for s in store.list(search="Tell me")] == [other.id]
    assert_search_index_in_sync(store.path)
    for action in (lambda: store.rename(conv.id, "x"), lambda: store.delete(conv.id)):
        with pytest.raises(UserError, match="no conversation"):
            action()


# --- search --------------------------------------------------------------------------------------

SPECIAL_TEXT = (
    'She said "hi" (twice) - well-known; a*b and star* NOT AND OR NEAR(x y) col:val ^start '
    "100% a_b back\\slash 我爱中文 😀!"
)


@pytest.mark.parametrize(
    "query",
    [
        '"hi"', '"hi', "(twice)", "(", ")", "-", "well-known", "-known", "a*b", "star*", "*",
        "NOT", "and", "OR", "NEAR(x", "col:val", "^start", "100%", "%", "a_b", "_", "\\", "back\\s",
        "中文", "我爱中文", "中", "😀", "SHE SAID", "well kno",
    ],
)
def test_search_takes_every_term_literally(store: Store, query: str) -> None:
    target, other = Conversation(), Conversation()
    target.add_turn("a question").reasoning = SPECIAL_TEXT
    other.add_turn("plain text, zero specials").answer = "plain again"
    store.save(target)
    store.save(other)

    assert [s.id for s in store.list(search=query)] == [target.id]


@pytest.mark.parametrize("query", ['"', '""', "'", "()", "NEAR(", "AND OR", "*:", "\x00", "  "])
def test_search_never_fails_on_syntax(store: Store, query: str) -> None:
    conv = Conversation()
    conv.add_turn("nothing to see")
    store.save(conv)
    assert isinstance(store.list(search=query), list)


def test_every_term_must_occur_in_one_turn(store: Store) -> None:
    both, one = Conversation(), Conversation()
    both.add_turn("apple").answer = "banana"
    one.add_turn("apple pie")
    one.add_turn("cherry")
    for conv in (both, one):
        store.save(conv)
    assert [s.id for s in store.list(search="apple banana")] == [both.id]
    assert {s.id for s in store.list(search="APPLE")} == {both.id, one.id}


def test_snippet_shows_the_match_as_one_safe_line(store: Store) -> None:
    conv = Conversation()
    turn = conv.add_turn("question")
    turn.answer = "x" * 200 + " \x1b[2J the needle\nin a haystack " + "y" * 200
    store.save(conv)

    (summary,) = store.list(search="needle")
    assert summary.snippet is not None
    assert "the needle in a haystack" in summary.snippet
    assert summary.snippet.startswith("…") and summary.snippet.endswith("…")
    assert summary.snippet.isprintable()


def test_a_title_match_has_no_snippet(store: Store) -> None:
    conv = rich_conversation()
    store.save(conv)
    store.rename(conv.id, "Quarterly plan")
    (summary,) = store.list(search="quarterly")
    assert (summary.id, summary.snippet) == (conv.id, None)


# --- concurrency and crashes ---------------------------------------------------------------------

WRITES = 25


def write_turns(path: Path, conv_id: str, start: threading.Barrier | None = None) -> None:
    with Store(path) as store:
        conv = Conversation(id=conv_id)
        if start:
            start.wait()
        for i in range(WRITES):
            turn = conv.add_turn(f"{conv_id} question {i}")
            store.save_turn(conv, i)
            turn.answer = f"{conv_id} answer {i}"
            store.save_turn(conv, i)


def assert_all_turns_written(path: Path, conv_ids: list[str]) -> None:
    with Store(path) as store:
        for conv_id in conv_ids:
            conv = store.get(conv_id)
            assert [(t.user, t.answer) for t in conv.turns] == [
                (f"{conv_id} question {i}", f"{conv_id} answer {i}") for i in range(WRITES)
            ]
    assert_search_index_in_sync(path)


def test_two_stores_writing_at_once_lose_no_turn(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    Store(path).close()
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(conv_id: str) -> None:
        try:
            write_turns(path, conv_id, start)
        except BaseException as err:  # reported below: an exception in a thread is easy to miss
            errors.append(err)

    threads = [threading.Thread(target=run, args=(name,)) for name in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert_all_turns_written(path, ["left", "right"])


WRITER = """
import sys
from pathlib import Path
from tests.test_store import write_turns
print("ready", flush=True)
sys.stdin.readline()
write_turns(Path(sys.argv[1]), sys.argv[2])
"""


def test_two_processes_writing_at_once_lose_no_turn(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    Store(path).close()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).parent.parent,
        )
        for name in ("left", "right")
    ]
    for writer in writers:
        assert writer.stdout.readline() == "ready\n"
    for writer in writers:
        writer.stdin.write("go\n")
        writer.stdin.close()
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    assert_all_turns_written(path, ["left", "right"])


# The child saves a conversation, then starts a much larger save of it and stops inside that
# transaction (the trace callback runs before each statement); the parent kills it there.
KILLED_WRITER = """
import json, os, sqlite3, sys, time
from reasonchat.conversation import Conversation
from reasonchat.store import Store

path, committed_json = sys.argv[1], sys.argv[2]
armed, turn_writes = False, 0
real_connect = sqlite3.connect

def stop_midway(sql):
    global turn_writes
    if armed and "INSERT INTO turns (conversation_id" in sql:
        turn_writes += 1
        if turn_writes == 150:
            print("inside", flush=True)
            time.sleep(600)

def connect(*args, **kwargs):
    conn = real_connect(*args, **kwargs)
    # A tiny page cache spills uncommitted pages into the WAL before the kill.
    conn.execute("PRAGMA cache_size = 8")
    conn.set_trace_callback(stop_midway)
    return conn

sqlite3.connect = connect
committed = Conversation.from_dict(json.loads(committed_json))
store = Store(path)
store.save(committed)
print("committed", os.path.getsize(path + "-wal"), flush=True)
bigger = Conversation.from_dict(committed.to_dict())
bigger.title = "half-written"
for turn in bigger.turns:
    turn.answer = "rewritten"
for i in range(300):
    bigger.add_turn(f"filler {i} " + "x" * 2000)
armed = True
store.save(bigger)
print("finished", flush=True)
"""


def test_a_writer_killed_inside_a_save_leaves_the_last_committed_state(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    committed = rich_conversation()
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path), json.dumps(committed.to_dict())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        word, wal_at_commit = child.stdout.readline().split()
        assert word == "committed"
        assert child.stdout.readline() == "inside\n"
        # Uncommitted pages of the interrupted save are on disk: recovery has to skip them.
        assert Path(f"{path}-wal").stat().st_size > int(wal_at_commit)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Store(path) as store:
        assert store.get(committed.id) == committed
        assert [s.id for s in store.list()] == [committed.id]
        assert store.list(search="filler") == []
        committed.turns[0].answer = "still writable"
        store.save(committed)
        assert store.get(committed.id) == committed
    assert_search_index_in_sync(path)


# --- files: permissions, refusals, locks ---------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_directory_0700_and_database_files_0600_whatever_the_umask(isolated_dirs: Path) -> None:
    previous = os.umask(0)
    try:
        with Store.open() as store:
            store.save(rich_conversation())
            files = [store.path, Path(f"{store.path}-wal"), Path(f"{store.path}-shm")]
            assert mode(isolated_dirs) == 0o700
            assert [mode(f) for f in files] == [0o600, 0o600, 0o600]
    finally:
        os.umask(previous)


def test_an_existing_database_is_made_private(isolated_dirs: Path) -> None:
    Store.open().close()
    database(isolated_dirs).chmod(0o644)
    with Store.open() as store:
        assert mode(store.path) == 0o600


def refused(path: Path, match: str) -> str:
    before = path.read_bytes()
    with pytest.raises(StoreError, match=match) as caught:
        with Store(path) as store:
            store.list()
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert path.read_bytes() == before
    return message


def test_a_newer_schema_is_refused_untouched(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    with Store(path) as store:
        store.save(rich_conversation())
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    refused(path, "newer")


def test_garbage_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "conversations.db"
    path.write_bytes(bytes(range(256)) * 40)
    refused(path, "not a usable reasonchat database")


def test_a_truncated_database_is_refused_untouched(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    with Store(path) as store:
        for i in range(20):
            conv = Conversation()
            conv.add_turn(f"question {i} " + "words " * 500)
            store.save(conv)
    full = path.read_bytes()
    path.write_bytes(full[: len(full) // 2])
    refused(path, "not a usable reasonchat database")


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
        conn.commit()
    refused(path, "not reasonchat's")


def test_a_write_lock_held_elsewhere_is_a_clear_error_not_a_hang(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    Store(path).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with Store(path, timeout=0.2) as store:
            started = time.monotonic()
            with pytest.raises(StoreError, match="locked") as caught:
                store.save(rich_conversation())
        assert time.monotonic() - started < 5
        assert str(path) in str(caught.value)
        other.execute("ROLLBACK")


def test_an_exclusive_lock_held_elsewhere_fails_the_open_clearly(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    Store(path).close()
    with closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked") as caught:
            Store(path, timeout=0.2)
        assert str(path) in str(caught.value)


# --- migrations ----------------------------------------------------------------------------------


def add_pinned(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0")


def columns(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(conversations)")]


def user_version(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_a_new_version_is_one_more_migration(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = database(isolated_dirs)
    conv = rich_conversation()
    with Store(path) as store:
        store.save(conv)
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, add_pinned))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Store(path) as store:
        assert store.get(conv.id) == conv
    assert user_version(path) == SCHEMA_VERSION + 1
    assert "pinned" in columns(path)


def test_a_failed_migration_changes_nothing(
    isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = database(isolated_dirs)
    Store(path).close()

    def half_done(conn: sqlite3.Connection) -> None:
        add_pinned(conn)
        conn.execute("SELECT * FROM no_such_table")

    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, half_done))
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="no_such_table"):
        Store(path)
    assert user_version(path) == SCHEMA_VERSION
    assert "pinned" not in columns(path)


def test_a_damaged_stats_column_is_a_store_error_naming_the_file(isolated_dirs: Path) -> None:
    with Store.open() as store:
        conv = rich_conversation()
        store.save(conv)
    with closing(sqlite3.connect(database(isolated_dirs))) as conn, conn:
        conn.execute("UPDATE turns SET reasoning_stats = '{\"new_tokens\": \"many\"}' WHERE idx = 0")
    with Store.open() as store, pytest.raises(StoreError, match="conversations.db") as info:
        store.get(conv.id)
    assert "damaged" in str(info.value) and "\n" not in str(info.value)


def test_search_filters_turns_by_provenance_and_stop_reason(store: Store) -> None:
    edited, stopped, plain = Conversation(title="source talk"), Conversation(), Conversation()
    turn = edited.add_turn("what is 2+2")
    turn.reasoning, turn.reasoning_source = "it is 5", "edited"
    turn.keep_first_version("it is 4", None)
    edited.add_turn("and the moon").reasoning = "rocks"
    turn = stopped.add_turn("long one")
    turn.reasoning, turn.reasoning_stats = "half", StageStats(stop_reason="answer_now")
    turn.answer, turn.answer_stats = "an answer", StageStats(stop_reason="eos")
    plain.add_turn("the moon").reasoning = "far"
    for conv in (edited, stopped, plain):
        store.save(conv)

    assert [s.id for s in store.list(search="source:edited")] == [edited.id]
    assert [s.id for s in store.list(search="stop:answer_now")] == [stopped.id]
    assert {s.id for s in store.list(search="STOP:eos")} == {stopped.id}
    # Words and filters hold for one turn: the edited turn is not about the moon.
    assert [s.id for s in store.list(search="source:edited 2+2")] == [edited.id]
    assert store.list(search="source:edited moon") == []
    # A title never satisfies a filter ("source" is in the title, not a reason to list it).
    assert {s.id for s in store.list(search="source:model moon")} == {edited.id, plain.id}
    (summary,) = store.list(search="source:edited")
    assert summary.snippet == "what is 2+2"  # the turn it found, from its start
    with pytest.raises(UserError, match=r"^unknown source 'mine' in the search \(choose from model, edited, user, none\)$"):
        store.list(search="source:mine")
    # Other words with a colon are text to find, as before.
    assert store.list(search="note:1") == []
