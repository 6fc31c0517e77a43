"""Think N times in one batch on a real (tiny) transformers model: the prompt prefilled once at batch 1,
the samples decoded together, each streamed to its own text; and the session turning them into
variants, each with its answer."""

from __future__ import annotations

from typing import Any

import pytest

from reasonchat.conversation import Conversation, StageStats
from reasonchat.engine.batch_sampling import sample_reasonings
from reasonchat.engine.protocol import ContextOverflow, StageRequest
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.engine.turn import StageFinished, StageStarted
from reasonchat.session import ChatSession
from reasonchat.settings import GenerationSettings
from tests.helpers.engine_fixtures import (  # noqa: F401 - fixtures
    byte_tokenizer_dir,
    stopping_backend,
    stopping_model_dir,
)


def reasoning_request(conversation: Conversation, **settings: Any) -> StageRequest:
    return StageRequest(
        conversation.id, "reasoning", conversation.stage_prompt(len(conversation.turns) - 1, "reasoning"),
        GenerationSettings(**settings),
    )  # fmt: skip


def test_the_prompt_is_prefilled_once_and_the_samples_decode_together(
    stopping_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = stopping_backend.model
    shapes: list[tuple[int, int]] = []
    forward = model.forward

    def recording(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids", args[0] if args else None)
        shapes.append(tuple(ids.shape))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", recording)
    conversation = Conversation()
    conversation.add_turn("Hello")
    request = reasoning_request(conversation, temperature=0.7, seed=1, reasoning_tokens=12)
    prompt = stopping_backend.count_tokens(request.prompt)
    streamed: dict[int, str] = {}
    samples = sample_reasonings(stopping_backend, request, 3, lambda row, d: streamed.__setitem__(row, streamed.get(row, "") + d))
    assert shapes[0] == (1, prompt - 1)  # once, at batch 1
    assert all(shape == (3, 1) for shape in shapes[1:])  # then one token a step for all three
    assert len(shapes) - 1 <= 12
    assert [text for text, _ in samples] == [streamed.get(row, "") for row in range(3)]
    for text, stats in samples:
        assert stats.prompt_tokens == prompt and 0 < stats.new_tokens <= 12
        assert stats.stop_reason in ("eos", "budget")
        assert stats.chunks and stats.chunks[-1][1] == len(text)


def test_a_seed_gives_the_same_samples_and_rows_differ(stopping_backend: Any) -> None:
    conversation = Conversation()
    conversation.add_turn("Hello")
    request = reasoning_request(conversation, temperature=5.0, seed=3, reasoning_tokens=10)
    first = [text for text, _ in sample_reasonings(stopping_backend, request, 4)]
    again = [text for text, _ in sample_reasonings(stopping_backend, request, 4)]
    assert first == again
    assert len(set(first)) > 1  # at a high temperature the rows are not one sample four times
    # Nearly greedy, each row decodes what the ordinary one-sample path decodes greedily.
    cool = reasoning_request(conversation, temperature=0.05, seed=3, reasoning_tokens=24)
    greedy = "".join(stopping_backend.stream(reasoning_request(conversation, temperature=0, reasoning_tokens=24)))
    assert {text for text, _ in sample_reasonings(stopping_backend, cool, 2)} == {greedy}


def test_no_room_is_an_overflow_before_any_work(stopping_backend: Any) -> None:
    conversation = Conversation()
    conversation.add_turn("Hello")
    request = reasoning_request(conversation, temperature=0.7)
    request.context_limit = 3
    with pytest.raises(ContextOverflow):
        sample_reasonings(stopping_backend, request, 2)


class BatchingBackend(ScriptedBackend):
    """Scripted answers; reasonings from a batch sampler that records its calls."""

    def __init__(self) -> None:
        super().__init__(lambda request: f"answer to {request.prompt.rsplit(chr(10), 3)[-3][:8]}")
        self.batches: list[int] = []
        self.batch_sampler = self.sample

    def sample(self, request: StageRequest, count: int, on_text: Any) -> list[tuple[str, StageStats]]:
        self.batches.append(count)
        return [(f"sample {i}", StageStats(prompt_tokens=9, new_tokens=2, stop_reason="eos")) for i in range(count)]


def test_the_session_turns_a_batch_into_variants_each_with_its_answer() -> None:
    backend = BatchingBackend()
    session = ChatSession(backend, Conversation(), settings=GenerationSettings(temperature=0.7))
    session.ask("q")
    events: list[Any] = []
    added = session.sample(3, events.append)
    turn = session.conversation.turns[0]
    assert backend.batches == [3] and added == [1, 2, 3]
    assert [v.reasoning for v in turn.variants[1:]] == ["sample 0", "sample 1", "sample 2"]
    assert [v.answer.answer for v in turn.variants[1:]] == ["answer to sample 0", "answer to sample 1", "answer to sample 2"]
    # Each sample is shown as a whole reasoning, then its streamed answer.
    stages = [(type(e).__name__, e.stage) for e in events if isinstance(e, StageStarted | StageFinished)]
    assert stages == [("StageStarted", "reasoning"), ("StageFinished", "reasoning"),
                      ("StageStarted", "answer"), ("StageFinished", "answer")] * 3  # fmt: skip
    assert turn.variants[2].stats.new_tokens == 2 and not session.busy


def test_the_benchmark_times_both_sides_and_restores_the_stop_tokens(stopping_backend: Any) -> None:
    from reasonchat.bench.sampling import bench_sampling

    eos = list(stopping_backend.loaded.eos_ids)
    lines: list[str] = []
    result = bench_sampling(stopping_backend, samples=2, tokens=4, rounds=1, report=lines.append)
    assert stopping_backend.loaded.eos_ids == eos
    assert result.sequential_s > 0 and result.batch_s > 0 and result.speedup > 0
    assert result.to_json()["samples"] == 2 and len(lines) == 4  # a warm-up and a round of each


def test_think_n_times_on_the_local_backend_samples_in_one_batch(stopping_backend: Any) -> None:
    session = ChatSession(stopping_backend, Conversation(), settings=GenerationSettings(temperature=0.7, seed=2, max_new_tokens=16))
    session.ask("hi")
    added = session.sample(2)
    turn = session.conversation.turns[0]
    assert added == [1, 2] and len(turn.variants) == 3
    for variant in turn.variants[1:]:
        assert variant.reasoning is not None and variant.stats.prompt_tokens > 0
        assert variant.answer.answer is not None and variant.answer.stats.stop_reason in ("eos", "budget")
