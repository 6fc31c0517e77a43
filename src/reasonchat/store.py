"""Saved conversations in one SQLite file (stdlib ``sqlite3``; no torch, no textual).

Safety rules this module keeps:

- every write is one ``BEGIN IMMEDIATE`` transaction in WAL mode with ``synchronous=FULL``: a
  process killed mid-save leaves the previous state, and two writers queue on the busy timeout
  instead of failing on a read-to-write lock upgrade;
- two writers on one conversation never overwrite each other's turns: ``save_turn`` finds a turn by
  its uid and appends a new one after every stored turn, deciding inside its write transaction, and
  a per-conversation ``revision`` tells a reader that its copy is stale;
- a file we cannot use (not a database, corrupt, a newer schema, someone else's tables, locked)
  raises ``StoreError`` naming it, and is never written to, migrated or "repaired";
- the data directory is created 0700 and the database files are 0600 (SQLite gives ``-wal``/``-shm``
  the mode of the main file, so creating that one 0600 covers all three).

Search uses an FTS5 trigram index over each turn's user, reasoning and answer text, so any substring
of three or more characters matches, CJK included; shorter terms fall back to ``LIKE``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reasonchat import paths
from reasonchat.conversation import REASONING_SOURCES, Conversation, StageStats, Turn, parse_mark
from reasonchat.errors import StoreError, UserError
from reasonchat.sanitize import sanitize

if TYPE_CHECKING:
    from reasonchat.search_query import SearchQuery

BUSY_TIMEOUT_S = 5.0
FILE_MODE = 0o600
DIR_MODE = 0o700
SNIPPET_BEFORE = 30
SNIPPET_AFTER = 70
# The trigram tokenizer indexes 3-character windows: shorter terms cannot use the index.
MIN_INDEXED_TERM = 3


@dataclass(frozen=True)
class ConversationSummary:
    """One row of ``Store.list``. ``tokens`` is the context the conversation used at its last
    generation (0 without stats); ``snippet`` shows where a search matched (``None`` without a
    search, or when only the title matched)."""

    id: str
    title: str
    created: str
    updated: str
    model: str
    turns: int
    tokens: int
    versions: int = 0  # every version of every turn: more than ``turns`` once one has variants
    snippet: str | None = None


# --- schema --------------------------------------------------------------------------------------

_V1 = (
    """CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        title TEXT NOT NULL,
        created TEXT NOT NULL,
        updated TEXT NOT NULL,
        model TEXT NOT NULL,
        system_prompt TEXT,
        tokens INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX conversations_by_updated ON conversations (updated)",
    # An explicit INTEGER PRIMARY KEY: the FTS index refers to it, and VACUUM may renumber an
    # implicit rowid.
    """CREATE TABLE turns (
        id INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        user TEXT NOT NULL,
        reasoning TEXT,
        answer TEXT,
        reasoning_stats TEXT,
        answer_stats TEXT,
        created TEXT NOT NULL,
        UNIQUE (conversation_id, idx)
    )""",
    """CREATE VIRTUAL TABLE turns_fts USING fts5 (
        user, reasoning, answer, content='turns', content_rowid='id', tokenize='trigram'
    )""",
    """CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns BEGIN
        INSERT INTO turns_fts (rowid, user, reasoning, answer)
        VALUES (new.id, new.user, new.reasoning, new.answer);
    END""",
    """CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns BEGIN
        INSERT INTO turns_fts (turns_fts, rowid, user, reasoning, answer)
        VALUES ('delete', old.id, old.user, old.reasoning, old.answer);
    END""",
    """CREATE TRIGGER turns_fts_update AFTER UPDATE ON turns BEGIN
        INSERT INTO turns_fts (turns_fts, rowid, user, reasoning, answer)
        VALUES ('delete', old.id, old.user, old.reasoning, old.answer);
        INSERT INTO turns_fts (rowid, user, reasoning, answer)
        VALUES (new.id, new.user, new.reasoning, new.answer);
    END""",
)


def _statements(statements: tuple[str, ...]) -> Callable[[sqlite3.Connection], None]:
    """A migration that runs ``statements`` in order, inside the migration's transaction."""

    def migrate(conn: sqlite3.Connection) -> None:
        # Statement by statement: executescript() would COMMIT the migration's transaction first.
        for statement in statements:
            conn.execute(statement)

    return migrate


# Two writers on one conversation (two `ask --continue`, the app and `ask`) must not overwrite each
# other's turn at the same index. ``revision`` counts writes of a conversation's turns, so a writer
# can tell that another one came between its read and its write (a rename is not counted: it changes
# no turn); ``uid`` names a turn independently of its index, so a turn first stored after someone
# else's is found again at the index it actually got.
_V2 = (
    "ALTER TABLE conversations ADD COLUMN revision INTEGER NOT NULL DEFAULT 0",
    # Dropped first so that giving every existing turn its uid does not re-index all their text.
    "DROP TRIGGER turns_fts_update",
    "ALTER TABLE turns ADD COLUMN uid TEXT",
    "UPDATE turns SET uid = lower(hex(randomblob(6)))",
    "CREATE UNIQUE INDEX turns_by_uid ON turns (conversation_id, uid)",
    """CREATE TRIGGER turns_fts_update AFTER UPDATE OF user, reasoning, answer ON turns BEGIN
        INSERT INTO turns_fts (turns_fts, rowid, user, reasoning, answer)
        VALUES ('delete', old.id, old.user, old.reasoning, old.answer);
        INSERT INTO turns_fts (rowid, user, reasoning, answer)
        VALUES (new.id, new.user, new.reasoning, new.answer);
    END""",
)


# Provenance: who wrote each reasoning, and the model's first reasoning and answer once the user
# changed one. Every turn stored before was the model's own, hence the default; adding columns
# rewrites no row, so the search index is untouched.
_V3 = (
    "ALTER TABLE turns ADD COLUMN reasoning_source TEXT NOT NULL DEFAULT 'model'",
    "ALTER TABLE turns ADD COLUMN original_reasoning TEXT",
    "ALTER TABLE turns ADD COLUMN original_answer TEXT",
)


# Variants: a turn keeps every version (``Turn.variants``). The active path stays in the columns it
# always had (what the history lists and older tools read); the whole tree is ``variants`` (JSON, NULL
# for a turn with one unmarked version), and the text of the other versions is in ``other_reasoning``
# and ``other_answer`` so that search finds it. The search index gains those two columns: an FTS5
# table cannot grow one, so it is made again and rebuilt from the turns.
_FTS_COLUMNS = "user, reasoning, answer, other_reasoning, other_answer"
_V4_FTS = (
    f"""CREATE VIRTUAL TABLE turns_fts USING fts5 (
        {_FTS_COLUMNS}, content='turns', content_rowid='id', tokenize='trigram'
    )""",
    f"""CREATE TRIGGER turns_fts_insert AFTER INSERT ON turns BEGIN
        INSERT INTO turns_fts (rowid, {_FTS_COLUMNS})
        VALUES (new.id, new.user, new.reasoning, new.answer, new.other_reasoning, new.other_answer);
    END""",
    f"""CREATE TRIGGER turns_fts_delete AFTER DELETE ON turns BEGIN
        INSERT INTO turns_fts (turns_fts, rowid, {_FTS_COLUMNS})
        VALUES ('delete', old.id, old.user, old.reasoning, old.answer, old.other_reasoning, old.other_answer);
    END""",
    f"""CREATE TRIGGER turns_fts_update AFTER UPDATE OF {_FTS_COLUMNS} ON turns BEGIN
        INSERT INTO turns_fts (turns_fts, rowid, {_FTS_COLUMNS})
        VALUES ('delete', old.id, old.user, old.reasoning, old.answer, old.other_reasoning, old.other_answer);
        INSERT INTO turns_fts (rowid, {_FTS_COLUMNS})
        VALUES (new.id, new.user, new.reasoning, new.answer, new.other_reasoning, new.other_answer);
    END""",
    "INSERT INTO turns_fts (turns_fts) VALUES ('rebuild')",
)


def _v4(conn: sqlite3.Connection) -> None:
    _statements((
        "DROP TRIGGER turns_fts_insert",
        "DROP TRIGGER turns_fts_delete",
        "DROP TRIGGER turns_fts_update",
        "DROP TABLE turns_fts",
        "ALTER TABLE turns ADD COLUMN variants TEXT",
        "ALTER TABLE turns ADD COLUMN other_reasoning TEXT",
        "ALTER TABLE turns ADD COLUMN other_answer TEXT",
    ))(conn)  # fmt: skip
    # Version 3 kept the model's first reasoning and answer beside a changed turn: its first variant.
    rows = conn.execute(
        f"SELECT id, {_V3_TURN_COLUMNS}, original_reasoning, original_answer FROM turns"
        " WHERE original_reasoning IS NOT NULL OR original_answer IS NOT NULL"
    ).fetchall()
    for row_id, *columns, original_reasoning, original_answer in rows:
        turn = _turn_from_columns(*columns)
        turn.keep_first_version(original_reasoning, original_answer)
        conn.execute(
            "UPDATE turns SET variants = :variants, other_reasoning = :other_reasoning,"
            " other_answer = :other_answer, original_reasoning = NULL, original_answer = NULL"
            " WHERE id = :id",
            {"id": row_id, **_variant_columns(turn)},
        )
    _statements(_V4_FTS)(conn)


# MIGRATIONS[i] takes the schema from version i to i + 1; a new version is one more function here.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    _statements(_V1),
    _statements(_V2),
    _statements(_V3),
    _v4,
)
SCHEMA_VERSION = len(MIGRATIONS)

_UPSERT_CONVERSATION = """
    INSERT INTO conversations (id, title, created, updated, model, system_prompt, tokens, revision)
    VALUES (:id, :title, :created, :updated, :model, :system_prompt, :tokens, :revision)
    ON CONFLICT (id) DO UPDATE SET
        title = excluded.title, created = excluded.created, updated = excluded.updated,
        model = excluded.model, system_prompt = excluded.system_prompt, tokens = excluded.tokens,
        revision = excluded.revision
"""
# An autosave adds to what is stored: a title renamed meanwhile (the history, another process) stays,
# and ``updated`` never goes back when another writer's stage ended after ours.
_ADD_TO_CONVERSATION = """
    INSERT INTO conversations (id, title, created, updated, model, system_prompt, tokens, revision)
    VALUES (:id, :title, :created, :updated, :model, :system_prompt, :tokens, :revision)
    ON CONFLICT (id) DO UPDATE SET
        updated = max(updated, excluded.updated), model = excluded.model,
        system_prompt = excluded.system_prompt, tokens = excluded.tokens,
        revision = excluded.revision
"""
# The WHERE keeps an unchanged turn from being rewritten and re-indexed on every save.
_UPSERT_TURN = """
    INSERT INTO turns (conversation_id, idx, user, reasoning, answer, reasoning_stats, answer_stats,
                       created, uid, reasoning_source, variants, other_reasoning, other_answer)
    VALUES (:conversation_id, :idx, :user, :reasoning, :answer, :reasoning_stats, :answer_stats,
            :created, :uid, :reasoning_source, :variants, :other_reasoning, :other_answer)
    ON CONFLICT (conversation_id, idx) DO UPDATE SET
        user = excluded.user, reasoning = excluded.reasoning, answer = excluded.answer,
        reasoning_stats = excluded.reasoning_stats, answer_stats = excluded.answer_stats,
        created = excluded.created, reasoning_source = excluded.reasoning_source,
        variants = excluded.variants, other_reasoning = excluded.other_reasoning,
        other_answer = excluded.other_answer
    WHERE (user, reasoning, answer, reasoning_stats, answer_stats, created, reasoning_source,
           variants, other_reasoning, other_answer)
        IS NOT (excluded.user, excluded.reasoning, excluded.answer, excluded.reasoning_stats,
                excluded.answer_stats, excluded.created, excluded.reasoning_source,
                excluded.variants, excluded.other_reasoning, excluded.other_answer)
"""
# The columns a version-3 turn is read from (``_turn_from_columns``), in its order.
_V3_TURN_COLUMNS = "user, reasoning, answer, reasoning_stats, answer_stats, created, uid, reasoning_source"
# The columns ``_turn_from_row`` reads, in its order.
_TURN_COLUMNS = _V3_TURN_COLUMNS + ", variants"
# ``versions``: every answer of every reasoning variant of every turn (a turn without a tree is one).
_SUMMARY_COLUMNS = """
    SELECT c.id, c.title, c.created, c.updated, c.model,
           (SELECT count(*) FROM turns t WHERE t.conversation_id = c.id), c.tokens,
           (SELECT ifnull(sum(ifnull(
                (SELECT sum(json_array_length(v.value, '$.answers'))
                 FROM json_each(t.variants, '$.variants') v), 1)), 0)
            FROM turns t WHERE t.conversation_id = c.id)
    FROM conversations c
"""


def existing_database(data_dir: str | Path | None = None) -> Path | None:
    """The database in ``data_dir`` if one was ever written, for readers that must not create one. An
    empty file (a first start interrupted) is none yet: opening it would make one."""
    path = paths.database_path(data_dir)
    return path if path.exists() and path.stat().st_size > 0 else None


# --- the store -----------------------------------------------------------------------------------


class Store:
    """The conversation database. One connection, safe to share between threads (calls are
    serialized); several ``Store`` objects and processes may use the same file at once."""

    def __init__(self, path: Path, *, timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._lock = threading.RLock()
        self._conn = self._connect()
        try:
            with self._guard():
                # Whatever may refuse the file comes before the first write: switching to WAL
                # rewrites the header of a database that was not in WAL mode.
                self._check_ours()
                self._configure()
                self._migrate()
                self._make_files_private()
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def open(cls, data_dir: str | Path | None = None) -> Store:
        """The store in ``data_dir`` (default: ``$REASONCHAT_DATA_DIR``, else the user data dir)."""
        return cls(paths.database_path(data_dir))

    # --- conversations ---

    def save(self, conv: Conversation) -> None:
        """Write the whole conversation, replacing whatever was stored under its id: for a new
        conversation (an import, a shortened copy) or a deliberate replacement. Autosaves, which must
        not undo another writer's turns, use ``save_turn``."""
        turn_rows = [_turn_row(conv, i, i) for i in range(len(conv.turns))]
        with self._write() as conn:
            revision = self._stored_revision(conn, conv.id) + 1
            conn.execute(_UPSERT_CONVERSATION, _conversation_row(conv, revision))
            conn.execute(
                "DELETE FROM turns WHERE conversation_id = ? AND idx >= ?",
                (conv.id, len(conv.turns)),
            )
            # A stored turn at an index that now holds another turn goes, so the upsert by index
            # below never meets a uid still held at another index.
            conn.executemany(
                "DELETE FROM turns WHERE conversation_id = ? AND idx = ? AND uid IS NOT ?",
                [(conv.id, row["idx"], row["uid"]) for row in turn_rows],
            )
            conn.executemany(_UPSERT_TURN, turn_rows)
        conv.revision = revision

    def save_turn(self, conv: Conversation, index: int) -> int:
        """Write turn ``index`` and the conversation row: cheap enough to autosave while streaming.
        Earlier turns missing from the database are written too, so no gap is left.

        Safe against another process saving turns of the same conversation meanwhile (checked inside
        the one write transaction): a turn is found by its uid, so it is updated where it is stored; a
        turn not stored yet is appended after every stored one, never over another writer's turn at
        the same index; stored turns other than ``index`` are left as they are (another writer may
        have regenerated them). Returns how many stored turns this conversation did not hold when
        turn ``index`` was first appended after them (0 when no one else wrote). ``conv.revision``
        advances only when the write leaves the store holding exactly what ``conv`` holds up to
        ``index``, so a stale copy keeps looking stale (``revision``)."""
        if not 0 <= index < len(conv.turns):
            raise IndexError(f"turn {index} out of range (the conversation has {len(conv.turns)})")
        with self._write() as conn:
            before = self._stored_revision(conn, conv.id, missing=-1)
            stored = dict(
                conn.execute("SELECT uid, idx FROM turns WHERE conversation_id = ?", (conv.id,))
            )
            ours = {turn.uid for turn in conv.turns}
            others = sum(1 for uid in stored if uid not in ours)
            # -1: not stored (new, or deleted by another process since): what we write is all of it.
            in_sync = before in (-1, conv.revision) and others == 0
            next_idx = max(stored.values(), default=-1) + 1
            rows, placed_after = [], 0
            for i in range(index + 1):
                uid = conv.turns[i].uid
                if uid in stored:
                    if i == index:
                        rows.append(_turn_row(conv, i, stored[uid]))
                    continue
                rows.append(_turn_row(conv, i, next_idx))
                next_idx += 1
                if i == index:
                    placed_after = others
            revision = max(before, 0) + 1
            conn.execute(_ADD_TO_CONVERSATION, _conversation_row(conv, revision))
            conn.executemany(_UPSERT_TURN, rows)
            if not in_sync:
                # Our copy is not the stored conversation: its context comes from what is stored.
                conn.execute(
                    "UPDATE conversations SET tokens = ? WHERE id = ?",
                    (_stored_context_tokens(conn, conv.id), conv.id),
                )
        if in_sync:
            conv.revision = revision
        return placed_after

    def revision(self, conv_id: str) -> int | None:
        """The stored revision of a conversation (``None``: not stored): a reader compares it with
        ``Conversation.revision`` to learn whether another process changed its turns."""
        with self._guard():
            row = self._conn.execute(
                "SELECT revision FROM conversations WHERE id = ?", (conv_id,)
            ).fetchone()
        return None if row is None else int(row[0])

    def get(self, conv_id: str) -> Conversation:
        with self._guard():
            row = self._conn.execute(
                "SELECT id, title, created, updated, model, system_prompt, revision"
                " FROM conversations WHERE id = ?",
                (conv_id,),
            ).fetchone()
            if row is None:
                raise UserError(f"no conversation with id {conv_id!r}")
            turns = self._conn.execute(
                f"SELECT {_TURN_COLUMNS} FROM turns WHERE conversation_id = ? ORDER BY idx",
                (conv_id,),
            ).fetchall()
        conv_id, title, created, updated, model, system_prompt, revision = row
        try:
            parsed = [_turn_from_row(t) for t in turns]
        except ValueError as err:  # a damaged stats column (json.JSONDecodeError is a ValueError)
            raise StoreError(f"{self.path}: conversation {conv_id} has a damaged turn ({err})") from None
        return Conversation(
            id=conv_id,
            title=title,
            created=created,
            updated=updated,
            model=model,
            system_prompt=system_prompt,
            turns=parsed,
            revision=revision,
        )

    def resolve(self, id_or_prefix: str) -> str:
        """The full id for an id or a unique prefix of one."""
        if not id_or_prefix:
            raise UserError("a conversation id cannot be empty")
        with self._guard():
            if self._conn.execute(
                "SELECT 1 FROM conversations WHERE id = ?", (id_or_prefix,)
            ).fetchone():
                return id_or_prefix
            rows = self._conn.execute(
                "SELECT id FROM conversations WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 4",
                (len(id_or_prefix), id_or_prefix),
            ).fetchall()
        if not rows:
            raise UserError(f"no conversation with id {id_or_prefix!r}")
        if len(rows) > 1:
            shown = ", ".join(r[0] for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
            raise UserError(
                f"id prefix {id_or_prefix!r} is ambiguous ({shown}); give more characters"
            )
        return rows[0][0]

    def list(
        self, search: str | None = None, limit: int | None = None, within: str | None = None
    ) -> list[ConversationSummary]:
        """Conversations, most recently updated first; with ``search``, those where every
        whitespace-separated word occurs (case-insensitively) in one turn, or in the title, and that
        turn passes every ``name:value`` filter (``search_query``). ``within`` (``question``,
        ``reasoning`` or ``answer``) looks for the words in that part of a turn only (any version)."""
        from reasonchat import search_query  # searching only: a replay's start does without it

        query = search_query.parse(search, within)
        terms = list(query.words)
        with self._guard():
            if not query:
                return [ConversationSummary(*row) for row in self._summary_rows("", [], limit)]
            hits = self._first_matching_turns(query)
            where, params = "WHERE c.id IN (SELECT value FROM json_each(?))", [json.dumps(list(hits))]
            if terms and not query.filters and query.within is None:  # those are about turns
                where += " OR (" + " AND ".join([r"c.title LIKE ? ESCAPE '\'"] * len(terms)) + ")"
                params += map(_like_pattern, terms)
            rows = self._summary_rows(where, params, limit)
            return [
                ConversationSummary(*row, snippet=self._snippet(row[0], hits.get(row[0]), terms))
                for row in rows
            ]

    def rename(self, conv_id: str, title: str) -> None:
        """Change the title only: ``updated`` dates the content, which a rename leaves alone."""
        with self._write() as conn:
            if not conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ?", (title, conv_id)
            ).rowcount:
                raise UserError(f"no conversation with id {conv_id!r}")

    def delete(self, conv_id: str) -> None:
        with self._write() as conn:
            # Turns go by ON DELETE CASCADE; their delete trigger keeps the search index in sync.
            if not conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,)).rowcount:
                raise UserError(f"no conversation with id {conv_id!r}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- opening ---

    def _connect(self) -> sqlite3.Connection:
        _make_private_dir(self.path.parent)
        try:
            # Created 0600 before SQLite sees it (an empty file is a new database to SQLite).
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        except FileExistsError:
            pass
        except OSError as err:
            raise StoreError(f"cannot create {self.path}: {err.strerror}") from None
        try:
            # isolation_level=None: transactions are ours (BEGIN IMMEDIATE), never implicit.
            return sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as err:
            raise StoreError(_describe(self.path, err, self.timeout)) from None

    def _check_ours(self) -> int:
        """The file's schema version; ``StoreError`` if the file is not one we may write."""
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this reasonchat knows"
                f" ({SCHEMA_VERSION}); upgrade reasonchat to open it (the file was left untouched)"
            )
        (objects,) = self._conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        if version == 0 and objects:
            raise StoreError(
                f"{self.path} is an SQLite database but not reasonchat's; it was left untouched"
            )
        return version

    def _configure(self) -> None:
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def _migrate(self) -> None:
        if self._check_ours() == SCHEMA_VERSION:
            return
        with self._write() as conn:
            # Checked again under the write lock: another process may have migrated meanwhile.
            for migrate in MIGRATIONS[self._check_ours() :]:
                migrate(conn)
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own integer.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _make_files_private(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            file = self.path.with_name(self.path.name + suffix)
            try:
                if file.stat().st_mode & 0o777 != FILE_MODE:
                    file.chmod(FILE_MODE)
            except FileNotFoundError:
                pass
            except OSError as err:
                raise StoreError(f"cannot make {file} private: {err.strerror}") from None

    @staticmethod
    def _stored_revision(conn: sqlite3.Connection, conv_id: str, missing: int = 0) -> int:
        row = conn.execute("SELECT revision FROM conversations WHERE id = ?", (conv_id,)).fetchone()
        return missing if row is None else int(row[0])

    # --- transactions and errors ---

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Serialize access and turn SQLite's errors into one-line ``StoreError``s."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as err:
                raise StoreError(_describe(self.path, err, self.timeout)) from None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._guard():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                # SQLite may already have rolled back (e.g. on a full disk).
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # --- search ---

    def _summary_rows(self, where: str, params: Sequence[Any], limit: int | None) -> list[Any]:
        sql = f"{_SUMMARY_COLUMNS} {where} ORDER BY c.updated DESC, c.created DESC, c.id LIMIT ?"
        return self._conn.execute(sql, [*params, -1 if limit is None else limit]).fetchall()

    def _first_matching_turns(self, query: SearchQuery) -> dict[str, int]:
        """conversation id -> index of its first turn that contains every word and passes every filter."""
        terms = query.words
        indexed = [t for t in terms if len(t) >= MIN_INDEXED_TERM]
        columns = _SEARCHED_COLUMNS[query.within]
        conditions, params = [], []
        for name, value in query.filters:
            if name == "source":
                conditions.append("t.reasoning_source = ?")
                params.append(value)
            else:  # either stage's stop reason
                conditions.append(
                    "? IN (json_extract(t.reasoning_stats, '$.stop_reason'),"
                    " json_extract(t.answer_stats, '$.stop_reason'))"
                )
                params.append(value)
        if indexed:
            conditions.append("t.id IN (SELECT rowid FROM turns_fts WHERE turns_fts MATCH ?)")
            scope = "{" + " ".join(columns) + "} : " if query.within else ""
            params.append(" ".join(scope + _fts_phrase(t) for t in indexed))
        for term in terms:
            if len(term) < MIN_INDEXED_TERM:
                # Fields joined by "\n": a term holds no whitespace, so it cannot match across two.
                joined = " || char(10) || ".join(f"ifnull(t.{column}, '')" for column in columns)
                conditions.append(f"({joined}) LIKE ? ESCAPE '\\'")
                params.append(_like_pattern(term))
        rows = self._conn.execute(
            "SELECT t.conversation_id, min(t.idx) FROM turns t WHERE "
            + " AND ".join(conditions)
            + " GROUP BY t.conversation_id",
            params,
        ).fetchall()
        return dict(rows)

    def _snippet(self, conv_id: str, turn_index: int | None, terms: list[str]) -> str | None:
        if turn_index is None:
            return None
        texts = self._conn.execute(
            f"SELECT {_FTS_COLUMNS} FROM turns WHERE conversation_id = ? AND idx = ?",
            (conv_id, turn_index),
        ).fetchone()
        return make_snippet(texts, terms)


# Where a search looks, by ``SearchQuery.within`` (None: everywhere).
_SEARCHED_COLUMNS: dict[str | None, tuple[str, ...]] = {
    None: tuple(_FTS_COLUMNS.split(", ")),
    "question": ("user",),
    "reasoning": ("reasoning", "other_reasoning"),
    "answer": ("answer", "other_answer"),
}


def make_snippet(texts: Sequence[str | None], terms: Sequence[str]) -> str:
    """One line of sanitized text around the first place a term occurs in ``texts``."""
    # Longest first, so the regex prefers "hello" to "he" at the same position.
    pattern = re.compile(
        "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE
    )
    candidates = [sanitize(t) for t in texts if t]
    for text in candidates:
        if match := pattern.search(text):
            break
    else:
        # The index folds case a little differently from Python; show the start rather than nothing.
        text, match = (candidates or [""])[0], None
    start = max(0, match.start() - SNIPPET_BEFORE) if match else 0
    end = (match.end() if match else 0) + SNIPPET_AFTER
    line = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + line + ("…" if end < len(text) else "")


def _fts_phrase(term: str) -> str:
    # A quoted FTS5 string is taken literally: quotes, parentheses, -, *, AND/OR/NOT lose meaning.
    return '"' + term.replace('"', '""') + '"'


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- rows ----------------------------------------------------------------------------------------


def _conversation_row(conv: Conversation, revision: int) -> dict[str, Any]:
    return {
        "id": conv.id,
        "title": conv.title,
        "created": conv.created,
        "updated": conv.updated,
        "model": conv.model,
        "system_prompt": conv.system_prompt,
        "tokens": conv.context_tokens(),
        "revision": revision,
    }


def _stored_context_tokens(conn: sqlite3.Connection, conv_id: str) -> int:
    """``Conversation.context_tokens`` of the stored turns, newest first, reading only as far back as
    the first turn with counts."""
    rows = conn.execute(
        f"SELECT {_TURN_COLUMNS} FROM turns"
        " WHERE conversation_id = ? ORDER BY idx DESC",
        (conv_id,),
    )
    for row in rows:
        try:
            tokens = _turn_from_row(row).context_tokens()
        except ValueError:  # a damaged stats column: ``get`` reports it; a save must not fail on it
            continue
        if tokens:
            return tokens
    return 0


def _turn_row(conv: Conversation, index: int, idx: int) -> dict[str, Any]:
    """Turn ``index`` of ``conv`` as the row stored at position ``idx``."""
    turn = conv.turns[index]
    return {
        "conversation_id": conv.id,
        "idx": idx,
        "uid": turn.uid,
        "user": turn.user,
        "reasoning": turn.reasoning,
        "answer": turn.answer,
        "reasoning_stats": _stats_json(turn.reasoning_stats),
        "answer_stats": _stats_json(turn.answer_stats),
        "created": turn.created,
        "reasoning_source": turn.reasoning_source,
    } | _variant_columns(turn)


def _variant_columns(turn: Turn) -> dict[str, str | None]:
    """The tree (when there is more than the active path to keep) and the other versions' text."""
    if not turn.changed and turn.mark is None:
        return {"variants": None, "other_reasoning": None, "other_answer": None}
    data = turn.to_dict()
    tree = {"variants": data["variants"], "active": data["active"]} if "variants" in data else None
    reasonings, answers = [], []
    for r, variant in enumerate(turn.variants):
        if r != turn.active and variant.reasoning:
            reasonings.append(variant.reasoning)
        answers.extend(
            a.answer for n, a in enumerate(variant.answers)
            if a.answer and (r, n) != (turn.active, turn.current.active_answer)
        )  # fmt: skip
    return {
        # A single marked version: only its mark (the rest is in the columns).
        "variants": json.dumps(tree if tree else {"mark": turn.mark}, ensure_ascii=False),
        "other_reasoning": "\n\n".join(reasonings) or None,
        "other_answer": "\n\n".join(answers) or None,
    }


def _stats_json(stats: StageStats | None) -> str | None:
    return None if stats is None else json.dumps(stats.to_dict(), ensure_ascii=False)


def _stats_from_json(text: str | None) -> StageStats | None:
    return None if text is None else StageStats.from_dict(json.loads(text))


def _turn_from_row(row: Sequence[Any]) -> Turn:
    *columns, variants = row
    turn = _turn_from_columns(*columns)
    if variants is None:
        return turn
    tree = json.loads(variants)
    if not isinstance(tree, dict):
        raise ValueError("a turn's variants must be an object")
    if "variants" not in tree:
        turn.mark = parse_mark(tree.get("mark"))
        return turn
    restored = Turn.from_dict({"user": turn.user, "created": turn.created, **tree})
    restored.uid = turn.uid
    return restored


def _turn_from_columns(
    user: str, reasoning: str | None, answer: str | None, reasoning_stats: str | None,
    answer_stats: str | None, created: str, uid: str, source: str,
) -> Turn:  # fmt: skip
    if source not in REASONING_SOURCES:
        raise ValueError(f"unknown reasoning source {source!r}")
    return Turn(
        user=user,
        reasoning=reasoning,
        answer=answer,
        reasoning_stats=_stats_from_json(reasoning_stats),
        answer_stats=_stats_from_json(answer_stats),
        created=created,
        uid=uid,
        reasoning_source=source,  # type: ignore[arg-type]
    )


# --- files and errors ----------------------------------------------------------------------------


def _make_private_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        # mkdir's mode passes through the umask; the directory must end up exactly 0700.
        directory.chmod(DIR_MODE)
    except OSError as err:
        raise StoreError(f"cannot create {directory}: {err.strerror}") from None


def _describe(path: Path, err: sqlite3.Error, timeout: float) -> str:
    code = getattr(err, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return (
            f"{path} is not a usable reasonchat database ({err}); it was left untouched:"
            " move it aside to start a new one"
        )
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return f"{path} is locked by another process (gave up after {timeout:g} s); try again later"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return f"cannot write {path}: {err}"
    return f"{path}: {err}"
