"""``reasonchat ask --base-url`` (a real process) and the chat's session against servers that misbehave.

Each scenario is scripted on the loopback stand-in (tests/helpers/sse_server.py) with a canned "model",
so the wire is all that is tested: a server that hangs, resets, sends garbage, huge events, an endless
stream or hostile text. Whatever it does, the command ends within seconds with the right exit code, one
line on stderr that says what happened, nothing unsafe on stdout, and a store that opens, passes
SQLite's integrity check, and holds the turn as far as it got (stop reason ``error`` on failure).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reasonchat.conversation import Conversation
from reasonchat.paths import DB_NAME
from reasonchat.store import Store
from tests.helpers.sse_server import CannedModel, FakeVLLM

WORDS = ["Fine", ", ", "thanks", ".", " 1", " 2", " 3"]
RUN_TIMEOUT_S = 30.0  # every scenario ends in a few seconds; this only keeps a bug from hanging the suite
REQUEST_TIMEOUT_S = 0.5

# Escape sequences (OSC 52 clipboard write, CSI colour, 8-bit CSI/OSC/ST, DEL, NUL) and, through
# raw JSON below, lone surrogates: none may reach the terminal as a control.
HOSTILE = [
    "ok ", "\x1b]52;c;aGFja2Vk\x07", "\x1b[31mred\x1b[0m ", "\x9b31m", "\x9d52;c;eA==\x9c", "\x7f\x00", " end"
]  # fmt: skip


@dataclass
class Scenario:
    faults: dict[str, Any]  # a callable value is called for each run (an endless body is used up)
    code: int
    stderr: str  # a substring of the one line
    reasoning: str | None = None  # the reasoning stored, where one was started
    reason: str = "error"
    args: list[str] = field(default_factory=list)


def text_event(text: str, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "text": text, "finish_reason": finish_reason}
    return f"data: {json.dumps({'object': 'text_completion', 'choices': [choice]})}\n\n".encode()


SCENARIOS = {
    "hang": Scenario({"hang": True}, 1, f"within {REQUEST_TIMEOUT_S:g} s (--request-timeout)", ""),
    "reset before answering": Scenario(
        {"reset_before_headers": True}, 1, "closed the connection without answering", ""
    ),
    "reset mid-stream": Scenario(
        {"reset_after": 3}, 1, "dropped the connection after 3 tokens", "Fine, thanks"
    ),
    "garbage event": Scenario(
        {"body": [text_event("Fine"), b"data: {not json\n\n"]}, 1, "an event that is not JSON", "Fine"
    ),
    "binary garbage": Scenario(
        {"body": [b"\x00\xff\xfe garbage \x1b]52;c;eA==\x07\n\n"]}, 1, "closed the reasoning stream before", ""
    ),
    "not an object": Scenario({"body": [b"data: [1, 2]\n\n"]}, 1, "unexpected event: [1, 2]", ""),
    "huge event": Scenario(
        {"body": [text_event("Fine"), b"data: " + b"A" * (50 << 20)]},  # the 50 MB event of issue 12
        1,
        "an event larger than 1 MiB",
        "Fine",
    ),
    "keep-alives forever": Scenario(
        {"body": lambda: itertools.chain([text_event("Fine")], itertools.repeat(b": ping\n\n"))},
        1,
        f"sent no text for {REQUEST_TIMEOUT_S:g} s after 1 tokens",
        "Fine",
    ),
    "endless stream": Scenario(
        {"ignore_max_tokens": True, "endless": "7 "},
        0,
        "(reasoning cut at its budget: 10 tokens; answering from it)",
        "Fine, than",  # the canned tokenizer counts characters: the server's /tokenize says 10
        reason="budget",
        args=["--max-new-tokens", "10"],
    ),
}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx follows proxy variables: a test must never leave 127.0.0.1.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def module_server() -> Iterator[FakeVLLM]:
    fake = FakeVLLM(CannedModel(WORDS)).start()
    yield fake
    fake.stop()


@pytest.fixture
def server(module_server: FakeVLLM) -> FakeVLLM:
    module_server.reset()
    module_server.model = CannedModel(WORDS)
    return module_server


def script(server: FakeVLLM, scenario: Scenario) -> None:
    for fault, value in scenario.faults.items():
        setattr(server.faults, fault, value() if callable(value) else value)


def ask(server: FakeVLLM, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "reasonchat", "ask", "--base-url", server.base_url]
    command += ["--request-timeout", str(REQUEST_TIMEOUT_S), *args, "How are you?"]
    env = os.environ | {"COLUMNS": "200"}  # one line stays one line
    return subprocess.run(command, capture_output=True, timeout=RUN_TIMEOUT_S, env=env)


def stored(data_dir: Path) -> list[Conversation]:
    """Every stored conversation, after SQLite's own check of the file."""
    with sqlite3.connect(data_dir / DB_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Store.open(data_dir) as store:
        return [store.get(summary.id) for summary in store.list()]


def assert_terminal_safe(text: str) -> None:
    unsafe = [
        c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
    ]
    assert not unsafe, f"control characters reached the output: {unsafe!r}"


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_ask_against_a_hostile_server_ends_with_one_line_and_keeps_the_turn(
    server: FakeVLLM, isolated_dirs: Path, name: str
) -> None:
    scenario = SCENARIOS[name]
    script(server, scenario)
    started = time.perf_counter()
    result = ask(server, *scenario.args)
    elapsed = time.perf_counter() - started

    stderr = result.stderr.decode()  # strict: a raw byte from the server would fail here
    assert result.returncode == scenario.code, stderr
    assert scenario.stderr in stderr and "Traceback" not in stderr
    if scenario.code:
        assert len(stderr.splitlines()) == 1 and stderr.startswith("reasonchat: error: ")
    assert_terminal_safe(stderr)
    assert_terminal_safe(result.stdout.decode())
    assert elapsed < 15

    (conversation,) = stored(isolated_dirs)
    (turn,) = conversation.turns
    assert turn.user == "How are you?"
    stats = turn.reasoning_stats
    assert stats is not None and stats.stop_reason == scenario.reason
    if scenario.reasoning is not None:
        assert (turn.reasoning or "").startswith(scenario.reasoning)
    if scenario.reason == "error":
        assert scenario.stderr in (stats.error or "") and turn.answer is None
    else:  # both stages were cut at the budget by the client
        assert turn.answer_stats is not None and turn.answer_stats.stop_reason == "budget"
        assert stats.new_tokens == turn.answer_stats.new_tokens == 10
    assert (isolated_dirs / DB_NAME).stat().st_size < 1 << 20  # nothing huge was stored


@pytest.mark.parametrize("json_mode", [False, True], ids=["text", "json"])
def test_hostile_text_never_reaches_the_terminal_and_is_stored_valid(
    server: FakeVLLM, isolated_dirs: Path, json_mode: bool
) -> None:
    # Lone surrogates can only arrive as JSON escapes: json.dumps writes them so ("\udc9b").
    server.faults.body = [text_event(text) for text in [*HOSTILE, "\udc9b", "\ud800 lone"]]
    server.faults.body.append(text_event("", "stop"))
    result = ask(server, *(["--json"] if json_mode else []))
    stdout, stderr = result.stdout.decode(), result.stderr.decode()  # strict UTF-8: no raw bytes
    assert result.returncode == 0, stderr
    assert_terminal_safe(stdout)
    assert_terminal_safe(stderr)
    assert "\\u001b" in stdout if json_mode else "ok " in stdout and " end" in stdout

    (conversation,) = stored(isolated_dirs)
    (turn,) = conversation.turns
    assert turn.reasoning is not None and turn.reasoning.startswith("ok \x1b]52;")  # stored exactly
    assert "\ufffd" in turn.reasoning and not any(0xD800 <= ord(c) <= 0xDFFF for c in turn.reasoning)


def test_the_chat_session_keeps_the_turn_and_the_store_against_the_same_servers(
    server: FakeVLLM, isolated_dirs: Path
) -> None:
    """The app's path: a ChatSession over the backend object, saved at each stage boundary."""
    from reasonchat.engine.openai_backend import OpenAIBackend
    from reasonchat.session import ChatSession
    from reasonchat.settings import GenerationSettings
    from tests.helpers.engine_fixtures import run_with_timeout

    backend = OpenAIBackend(server.base_url, request_timeout=REQUEST_TIMEOUT_S, retries=0).connect()
    with Store.open(isolated_dirs) as store:
        settings = GenerationSettings(max_new_tokens=50)
        session = ChatSession(backend, Conversation(), store=store, settings=settings)
        for name in ("reset mid-stream", "huge event", "endless stream", "hang"):
            server.reset()
            script(server, SCENARIOS[name])
            turn = run_with_timeout(lambda: session.ask(name), RUN_TIMEOUT_S)
            assert turn.reasoning_stats is not None
            assert turn.reasoning_stats.stop_reason == SCENARIOS[name].reason, name
    backend.close()

    (conversation,) = stored(isolated_dirs)
    users = [turn.user for turn in conversation.turns]
    assert users == ["reset mid-stream", "huge event", "endless stream", "hang"]
    assert conversation.turns[0].reasoning == "Fine, thanks"
    assert conversation.turns[2].answer_stats.stop_reason == "budget"
