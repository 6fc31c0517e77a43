"""Two writers on one conversation (issue 12, item 4): no turn is overwritten, in the store's transaction
and end to end with concurrent ``ask --continue``; a database of the previous schema opens intact."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

from reasonchat.conversation import Conversation
from reasonchat.session import placed_after_notice
from reasonchat.store import SCHEMA_VERSION, Store

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent


def database(data_dir: Path) -> Path:
    return data_dir / "conversations.db"


def saved_conversation(store: Store) -> Conversation:
    conv = Conversation(title="shared")
    turn = conv.add_turn("first question")
    turn.reasoning, turn.answer = "first reasoning", "first answer"
    store.save(conv)
    return conv


def assert_search_index_in_sync(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO turns_fts (turns_fts, rank) VALUES ('integrity-check', 1)")


# --- the store -----------------------------------------------------------------------------------


def test_a_turn_started_from_an_older_state_goes_after_the_other_writers(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    with Store(path) as a_store, Store(path) as b_store:
        conv_id = saved_conversation(a_store).id
        a, b = a_store.get(conv_id), b_store.get(conv_id)  # both read one turn
        a_turn, b_turn = a.add_turn("from a"), b.add_turn("from b")

        assert a_store.save_turn(a, 1) == 0
        assert b_store.save_turn(b, 1) == 1, "b learns that its turn went after one it never saw"
        # Each writer's later saves find its own turn where it was stored, whatever its index in memory.
        b_turn.reasoning = "b thinks"
        assert b_store.save_turn(b, 1) == 0
        a_turn.reasoning, a_turn.answer = "a thinks", "a answers"
        assert a_store.save_turn(a, 1) == 0

        stored = a_store.get(conv_id)
        assert [(t.user, t.reasoning, t.answer) for t in stored.turns] == [
            ("first question", "first reasoning", "first answer"),
            ("from a", "a thinks", "a answers"),
            ("from b", "b thinks", None),
        ]
        # Neither copy is what is stored now: both look stale to a reader that compares revisions.
        assert a_store.revision(conv_id) == stored.revision
        assert stored.revision not in (a.revision, b.revision)
        assert stored.title == "shared"
    assert_search_index_in_sync(path)


def test_the_conflict_is_seen_inside_the_write_transaction(isolated_dirs: Path) -> None:
    """The other writer commits while ours waits for the write lock: what ours read before it asked
    for the lock must not decide where its turn goes."""
    path = database(isolated_dirs)
    with Store(path) as store:
        conv = saved_conversation(store)
        conv.add_turn("ours")
        other = closing(sqlite3.connect(path, isolation_level=None))
        with other as conn:
            conn.execute("BEGIN IMMEDIATE")
            result: list[int | BaseException] = []

            def save() -> None:
                try:
                    result.append(store.save_turn(conv, 1))
                except BaseException as err:  # reported below: a thread's exception is easy to miss
                    result.append(err)

            saver = threading.Thread(target=save)
            saver.start()
            time.sleep(0.3)  # ours is now waiting on the busy timeout for our lock
            assert saver.is_alive() and not result
            conn.execute(
                "INSERT INTO turns (conversation_id, idx, user, created, uid)"
                " VALUES (?, 1, 'theirs', '2025-01-01T00:00:00.000+00:00', 'theirs-uid')",
                (conv.id,),
            )
            conn.execute("UPDATE conversations SET revision = revision + 1 WHERE id = ?", (conv.id,))
            conn.execute("COMMIT")
            saver.join(timeout=10)
        assert result == [1]
        assert [t.user for t in store.get(conv.id).turns] == ["first question", "theirs", "ours"]
    assert_search_index_in_sync(path)


def test_revisions_count_turn_writes_not_renames(isolated_dirs: Path) -> None:
    with Store(database(isolated_dirs)) as store:
        conv = saved_conversation(store)
        assert store.revision(conv.id) == conv.revision == 1
        assert store.revision("no-such-id") is None
        conv.add_turn("again")
        store.save_turn(conv, 1)
        assert store.revision(conv.id) == conv.revision == 2 == store.get(conv.id).revision
        store.rename(conv.id, "renamed elsewhere")
        assert store.revision(conv.id) == 2
        # An autosave adds a turn's text; it does not undo a rename made meanwhile.
        conv.turns[1].answer = "done"
        store.save_turn(conv, 1)
        assert store.get(conv.id).title == "renamed elsewhere"


def test_a_conversation_deleted_elsewhere_is_saved_again_whole(isolated_dirs: Path) -> None:
    with Store(database(isolated_dirs)) as store:
        conv = saved_conversation(store)
        store.delete(conv.id)
        conv.add_turn("still talking")
        assert store.save_turn(conv, 1) == 0
        assert store.get(conv.id) == conv


# --- the previous schema -------------------------------------------------------------------------


def test_a_database_of_schema_1_opens_with_every_conversation_intact(isolated_dirs: Path) -> None:
    path = database(isolated_dirs)
    isolated_dirs.mkdir(parents=True)
    shutil.copyfile(FIXTURES / "store_v1.db", path)
    expected = [Conversation.from_dict(d) for d in json.loads((FIXTURES / "store_v1.json").read_text())]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1

    with Store(path) as store:
        assert [store.get(conv.id) for conv in expected] == expected
        assert {(s.id, s.title, s.turns) for s in store.list()} == {
            (c.id, c.title, len(c.turns)) for c in expected
        }
        assert [s.id for s in store.list(search="quarterly question 2")] == ["77777777aaaa"]
        uids = [t.uid for conv in expected for t in store.get(conv.id).turns]
        assert all(uids) and len(set(uids)) == len(uids)

        # Migrated turns take part in the conflict check like new ones.
        a, b = store.get("a1b2c3d4e5f6"), store.get("a1b2c3d4e5f6")
        a.add_turn("from a")
        b.add_turn("from b")
        assert (store.save_turn(a, 3), store.save_turn(b, 3)) == (0, 1)
        assert [t.user for t in store.get(a.id).turns][-2:] == ["from a", "from b"]
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert_search_index_in_sync(path)


# --- concurrent ``ask --continue`` ---------------------------------------------------------------

# One ``ask`` over the scripted backend. Its reasoning waits until the other writer of its pair has
# read the conversation too (stream() runs before the first autosave), so every pair really races.
ASKER = """
import sys, time
from pathlib import Path
from reasonchat.cli import ask_command, main
from reasonchat.engine.scripted import ScriptedBackend

gate, name = Path(sys.argv[1]), sys.argv[2]

class Gated(ScriptedBackend):
    def stream(self, request):
        if request.stage == "reasoning":
            (gate / name).touch()
            deadline = time.monotonic() + 30
            while len(list(gate.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
        return super().stream(request)

backend = Gated(lambda request: f"{name} {'thinks' if request.stage == 'reasoning' else 'answers'}")
ask_command.open_selected_backend = lambda args, progress=None: backend
sys.exit(main(["ask", "--continue", sys.argv[3], f"question from {name}"]))
"""
PAIRS = 10


def test_pairs_of_concurrent_continues_store_every_turn(isolated_dirs: Path, tmp_path: Path) -> None:
    with Store(database(isolated_dirs)) as store:
        conv_id = saved_conversation(store).id
    env = {**os.environ, "REASONCHAT_DATA_DIR": str(isolated_dirs)}
    note = f"reasonchat: note: {placed_after_notice(1)}\n"
    expected_users = ["first question"]
    for pair in range(PAIRS):
        gate = tmp_path / f"gate-{pair}"
        gate.mkdir()
        names = [f"p{pair}-left", f"p{pair}-right"]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", ASKER, str(gate), name, conv_id[:8]],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
            )  # fmt: skip
            for name in names
        ]
        results = {}
        try:
            for name, proc in zip(names, procs, strict=True):
                out, err = proc.communicate(timeout=60)
                results[name] = (proc.returncode, out, err)
        finally:
            for proc in procs:
                proc.kill()
        for name, (code, out, err) in results.items():
            assert code == 0, err
            assert out == f"Reasoning:\n{name} thinks\n\nAnswer:\n{name} answers\n"
            assert err in ("", note), err
        # Exactly one of the pair saved second, and it says so in one line.
        first, second = sorted(names, key=lambda name: results[name][2] == note)
        assert (results[first][2], results[second][2]) == ("", note)
        expected_users += [f"question from {first}", f"question from {second}"]

    with Store(database(isolated_dirs)) as store:
        turns = store.get(conv_id).turns
    assert len(turns) == 1 + 2 * PAIRS
    assert [t.user for t in turns] == expected_users
    for turn in turns[1:]:
        name = turn.user.removeprefix("question from ")
        assert (turn.reasoning, turn.answer) == (f"{name} thinks", f"{name} answers")
        assert turn.answer_stats is not None and turn.answer_stats.stop_reason == "eos"
    assert_search_index_in_sync(database(isolated_dirs))
