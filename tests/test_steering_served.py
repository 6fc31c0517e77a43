"""Steering the stages against the loopback OpenAI-compatible server (tests/helpers/sse_server.py):
each stage's budget is its request's ``max_tokens``, and "answer now" closes the reasoning's stream
and starts the answer's request from the partial reasoning."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reasonchat.conversation import Conversation
from reasonchat.engine.openai_backend import OpenAIBackend
from reasonchat.engine.turn import StageStarted, TextChunk
from reasonchat.session import ChatSession
from reasonchat.settings import GenerationSettings
from tests.helpers.engine_fixtures import (  # noqa: F401 (fixtures)
    byte_tokenizer_dir,
    run_with_timeout,
    stopping_model_dir,
)
from tests.helpers.sse_server import FakeVLLM, Faults, TinyModel

QUESTION = "What is 482 + 1937?"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx follows proxy variables: a test must never leave 127.0.0.1.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest) -> Iterator[FakeVLLM]:
    from reasonchat.demo_model import is_available, model_dir

    directory: Path = model_dir() if is_available() else request.getfixturevalue("stopping_model_dir")
    fake = FakeVLLM(TinyModel(directory)).start()
    yield fake
    fake.stop()


@pytest.fixture
def backend(server: FakeVLLM) -> Iterator[OpenAIBackend]:
    server.reset()
    connected = OpenAIBackend(
        server.base_url, request_timeout=10.0, connect_timeout=1.0, retries=2, backoff_s=0.01
    ).connect()
    yield connected
    connected.close()


def test_each_stage_budget_becomes_its_requests_max_tokens(server: FakeVLLM, backend: OpenAIBackend) -> None:
    settings = GenerationSettings(max_new_tokens=100, reasoning_tokens=7, answer_tokens=5)
    session = ChatSession(backend, Conversation(), settings=settings)
    turn = run_with_timeout(lambda: session.ask(QUESTION), 30)
    assert [c.body["max_tokens"] for c in server.completions] == [7, 5]
    assert (turn.reasoning_stats.stop_reason, turn.answer_stats.stop_reason) == ("budget", "budget")
    assert turn.reasoning_stats.new_tokens == 7
    # The cut reasoning is what the answer's request continues.
    assert server.completions[1].body["prompt"] == session.conversation.stage_prompt(0, "answer")
    assert turn.reasoning
    assert server.completions[1].body["prompt"].endswith(f"{turn.reasoning}<|im_end|>\n<|im_start|>assistant\n")


def test_answer_now_closes_the_stream_and_starts_the_answer(server: FakeVLLM, backend: OpenAIBackend) -> None:
    # After its reasoning the server streams "7 " forever: only answer-now ends that stage.
    server.faults = Faults(endless="7 ")
    session = ChatSession(
        backend, Conversation(), settings=GenerationSettings(reasoning_tokens=10**6, answer_tokens=4)
    )
    at_answer: list[Any] = []

    def on_event(event: Any) -> None:
        reasoning = session.conversation.turns[-1].reasoning or ""
        if isinstance(event, TextChunk) and event.stage == "reasoning" and "7 7 7 " in reasoning:
            session.answer_now()
        if isinstance(event, StageStarted) and event.stage == "answer":
            # Before the answer's request goes out: the reasoning's stream is closed, the server saw it.
            deadline = time.monotonic() + 5
            while not server.disconnected.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)
            at_answer.append((server.disconnected.is_set(), len(server.completions)))

    turn = run_with_timeout(lambda: session.ask(QUESTION, on_event), 30)
    assert at_answer == [(True, 1)]
    assert turn.reasoning_stats.stop_reason == "answer_now"
    assert "7 7 7 " in turn.reasoning
    assert len(server.completions) == 2
    assert server.completions[1].body["prompt"] == session.conversation.stage_prompt(0, "answer")
    assert server.completions[1].body["prompt"].endswith(f"{turn.reasoning}<|im_end|>\n<|im_start|>assistant\n")
    assert turn.answer is not None and turn.answer_stats.stop_reason == "budget"  # the endless answer, cut at 4
