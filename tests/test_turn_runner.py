"""TurnRunner: the two-stage protocol, events and chunk timings, cancel from another thread, failures
that keep the partial turn, retries, the token budget (on the scripted and the transformers backend)
and GenerationSettings validation."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from reasonchat.conversation import Conversation, StageStats, Turn
from reasonchat.engine import (
    Backend,
    ContextOverflow,
    GenerationSettings,
    StageFinished,
    StageRequest,
    StageStarted,
    TextChunk,
    TurnRunner,
)
from reasonchat.engine.protocol import cap_new_tokens
from reasonchat.engine.scripted import ScriptedBackend, echo_script
from reasonchat.errors import UserError
from reasonchat.template import (
    ASSISTANT_GENERATION_PROMPT,
    DEFAULT_CONTEXT_LIMIT,
    DEFAULT_MAX_NEW_TOKENS,
    REASONING_GENERATION_PROMPT,
    REASONING_ROLE,
)
from tests.helpers.engine_fixtures import (  # noqa: F401 - fixtures
    ForwardHook,
    byte_tokenizer_dir,
    qwen_backend,
    qwen_random_model_dir,
    run_with_timeout,
    stopping_backend,
    stopping_model_dir,
)
from tests.helpers.models import REASONING_TEXT


def conversation_with(*questions: str) -> Conversation:
    conversation = Conversation()
    for question in questions:
        conversation.add_turn(question)
    return conversation


def script(reasoning: str, answer: str):
    return lambda request: reasoning if request.stage == "reasoning" else answer


# --- protocol and events (scripted backend) ------------------------------------------------------


def test_events_stage_prompts_and_chunk_timings() -> None:
    backend = ScriptedBackend(script("one two three", "four five"))
    assert isinstance(backend, Backend)
    conversation = conversation_with("first")
    conversation.turns[0].reasoning, conversation.turns[0].answer = "r0", "a0"
    conversation.add_turn("second")
    updated = conversation.updated
    events: list[Any] = []
    runner = TurnRunner(backend, GenerationSettings(max_new_tokens=50), context_limit=1000)
    turn = run_with_timeout(lambda: runner.run(conversation, events.append))
    assert turn is conversation.turns[1]
    assert (turn.reasoning, turn.answer) == ("one two three", "four five")
    assert turn.reasoning_stats.stop_reason == turn.answer_stats.stop_reason == "eos"
    assert conversation.updated >= updated

    # Prompts: stage 1 asks for reasoning, stage 2 has the reasoning turn and asks for assistant.
    first, second = backend.requests
    assert (first.stage, second.stage) == ("reasoning", "answer")
    assert first.prompt == conversation.stage_prompt(1, "reasoning")
    assert first.prompt.endswith(REASONING_GENERATION_PROMPT)
    assert "<|im_start|><|reasoning|>\nr0<|im_end|>\n<|im_start|>assistant\na0<|im_end|>\n" in (
        first.prompt
    )
    assert second.prompt == first.prompt + "one two three<|im_end|>\n" + ASSISTANT_GENERATION_PROMPT
    for request in (first, second):
        assert request.conversation_id == conversation.id
        assert request.context_limit == 1000
        assert request.settings.max_new_tokens == 50

    # Events: started, chunks, finished per stage, in order, for turn 1.
    names = [(type(e).__name__, e.stage) for e in events]
    assert names == [("StageStarted", "reasoning")] + [("TextChunk", "reasoning")] * 3 + [
        ("StageFinished", "reasoning"), ("StageStarted", "answer")
    ] + [("TextChunk", "answer")] * 2 + [("StageFinished", "answer")]  # fmt: skip
    assert all(e.turn_index == 1 for e in events)
    started = [e for e in events if isinstance(e, StageStarted)]
    assert started[0].prompt_tokens == backend.count_tokens(first.prompt)
    assert started[1].prompt_tokens == backend.count_tokens(second.prompt)
    assert all(e.context_limit == 1000 for e in started)
    chunks = [e for e in events if isinstance(e, TextChunk) and e.stage == "reasoning"]
    assert "".join(c.text for c in chunks) == "one two three"
    assert [c.new_tokens for c in chunks] == [1, 2, 3]
    finished = [e for e in events if isinstance(e, StageFinished)]
    assert finished[0].stats is turn.reasoning_stats and finished[1].text == "four five"

    # Chunk timings for replay: one per chunk, cumulative lengths, non-decreasing times.
    for text, stats, stage_chunks in (
        (turn.reasoning, turn.reasoning_stats, chunks),
        (turn.answer, turn.answer_stats, [e for e in events if isinstance(e, TextChunk)][3:]),
    ):
        assert len(stats.chunks) == len(stage_chunks)
        lengths = [n for _, n in stats.chunks]
        assert lengths == [len("".join(c.text for c in stage_chunks[: i + 1]))
                           for i in range(len(stage_chunks))]  # fmt: skip
        assert lengths[-1] == len(text)
        times = [t for t, _ in stats.chunks]
        assert times == sorted(times) and times[0] >= 0
        assert [t for t, _ in stats.chunks] == [round(c.elapsed_s, 4) for c in stage_chunks]


def test_live_turn_is_filled_while_streaming() -> None:
    backend = ScriptedBackend(script("a b c", "d"))
    conversation = conversation_with("q")
    seen: list[str | None] = []
    runner = TurnRunner(backend)
    runner.run(conversation, lambda e: seen.append(conversation.turns[0].reasoning))
    # (StageStarted comes first, then the text grows chunk by chunk: a UI reading the turn on each
    # chunk sees the live text.)
    assert seen[1:5] == ["a ", "a b ", "a b c", "a b c"]


def test_defaults() -> None:
    runner = TurnRunner(ScriptedBackend())
    assert runner.settings == GenerationSettings()
    assert runner.settings.max_new_tokens == DEFAULT_MAX_NEW_TOKENS == 3000
    assert runner.context_limit == DEFAULT_CONTEXT_LIMIT == 32000
    turn = runner.run(conversation_with("hello there"))
    assert turn.reasoning == echo_script(
        StageRequest("x", "reasoning", "<|im_start|>user\nhello there<|im_end|>\n")
    )
    assert turn.answer == "You said: **hello there**"


# --- cancel, failures, retries -------------------------------------------------------------------


def cancel_after(runner: TurnRunner, stage: str, chunks: int) -> Any:
    """An event handler that cancels from another thread after ``chunks`` chunks of ``stage``."""
    count = 0
    threads: list[threading.Thread] = []

    def on_event(event: Any) -> None:
        nonlocal count
        if isinstance(event, TextChunk) and event.stage == stage:
            count += 1
            if count == chunks:
                threads.append(threading.Thread(target=runner.cancel))
                threads[-1].start()
                threads[-1].join()

    return on_event


def test_cancel_from_another_thread_during_reasoning() -> None:
    backend = ScriptedBackend(script("w1 w2 w3 w4 w5 w6", "never"), delay_s=0.001)
    runner = TurnRunner(backend)
    conversation = conversation_with("q")
    turn = run_with_timeout(lambda: runner.run(conversation, cancel_after(runner, "reasoning", 2)))
    assert turn.reasoning == "w1 w2 "
    assert turn.reasoning_stats.stop_reason == "cancelled"
    assert turn.answer is None and turn.answer_stats is None
    assert [r.stage for r in backend.requests] == ["reasoning"]
    assert not runner.cancelled, "the flag is cleared when the run ends"


def test_cancel_from_another_thread_during_answer() -> None:
    backend = ScriptedBackend(script("r1 r2", "a1 a2 a3 a4"), delay_s=0.001)
    runner = TurnRunner(backend)
    turn = run_with_timeout(
        lambda: runner.run(conversation_with("q"), cancel_after(runner, "answer", 3))
    )
    assert turn.reasoning == "r1 r2" and turn.reasoning_stats.stop_reason == "eos"
    assert turn.answer == "a1 a2 a3 " and turn.answer_stats.stop_reason == "cancelled"


def test_a_cancel_before_the_run_starts_is_not_lost() -> None:
    backend = ScriptedBackend(script("r1 r2", "a1"))
    runner = TurnRunner(backend)
    runner.cancel()
    turn = runner.run(conversation_with("q"))
    assert turn.reasoning == "" and turn.reasoning_stats.stop_reason == "cancelled"
    assert turn.answer is None and backend.requests == []


def test_a_cancel_between_stages_does_not_start_the_answer() -> None:
    backend = ScriptedBackend(script("r1 r2", "a1 a2"))
    runner = TurnRunner(backend)

    def on_event(event: Any) -> None:
        if isinstance(event, StageFinished) and event.stage == "reasoning":
            runner.cancel()

    turn = runner.run(conversation_with("q"), on_event)
    assert turn.reasoning == "r1 r2" and turn.reasoning_stats.stop_reason == "eos"
    assert turn.answer == "" and turn.answer_stats.stop_reason == "cancelled"
    assert [r.stage for r in backend.requests] == ["reasoning"]


def test_the_turn_holds_the_stage_text_when_stage_started_arrives() -> None:
    seen: list[Any] = []
    conversation = conversation_with("q")

    def on_event(event: Any) -> None:
        if isinstance(event, StageStarted):
            seen.append(conversation.turns[-1].text(event.stage))

    TurnRunner(ScriptedBackend(script("r", "a"))).run(conversation, on_event)
    assert seen == ["", ""]


def test_a_new_run_after_a_cancel_is_not_cancelled() -> None:
    backend = ScriptedBackend(script("x y z", "ok"))
    runner = TurnRunner(backend)
    conversation = conversation_with("q")
    runner.run(conversation, cancel_after(runner, "reasoning", 1))
    conversation.add_turn("again")
    turn = runner.run(conversation)
    assert (turn.reasoning, turn.answer) == ("x y z", "ok")
    assert not runner.cancelled


def test_failure_keeps_partial_text_and_skips_the_answer() -> None:
    backend = ScriptedBackend(script("a b c d", "never"), fail_at=("reasoning", 2))
    events: list[Any] = []
    turn = TurnRunner(backend).run(conversation_with("q"), events.append)
    assert turn.reasoning == "a b "
    assert turn.reasoning_stats.stop_reason == "error"
    assert turn.reasoning_stats.error == "scripted failure"
    assert turn.answer is None
    assert isinstance(events[-1], StageFinished) and events[-1].stats.stop_reason == "error"


def test_failure_in_the_answer_keeps_the_reasoning() -> None:
    backend = ScriptedBackend(script("r", "a b c"), fail_at=("answer", 1))
    turn = TurnRunner(backend).run(conversation_with("q"))
    assert turn.reasoning == "r" and turn.reasoning_stats.stop_reason == "eos"
    assert turn.answer == "a " and turn.answer_stats.stop_reason == "error"


class BuggyBackend(ScriptedBackend):
    """A backend whose stream raises a plain exception (a bug), not a GenerationError."""

    def stream(self, request: StageRequest) -> Any:
        inner = super().stream(request)

        class Stream:
            stats = inner.stats

            def __iter__(self) -> Any:
                yield "partial "
                raise KeyError("oops")

        return Stream()


def test_a_backend_bug_does_not_lose_the_partial_turn() -> None:
    turn = TurnRunner(BuggyBackend()).run(conversation_with("q"))
    assert turn.reasoning == "partial "
    assert turn.reasoning_stats.stop_reason == "error"
    assert turn.reasoning_stats.error.startswith("KeyError")


def test_a_finished_reasoning_is_not_generated_again() -> None:
    backend = ScriptedBackend(script("new reasoning", "the answer"))
    conversation = conversation_with("q")
    turn = conversation.turns[0]
    turn.reasoning, turn.reasoning_stats = "old reasoning", StageStats(stop_reason="max_new_tokens")
    TurnRunner(backend).run(conversation)
    assert [r.stage for r in backend.requests] == ["answer"]
    assert "<|im_start|><|reasoning|>\nold reasoning<|im_end|>\n" in backend.requests[0].prompt
    assert (turn.reasoning, turn.answer) == ("old reasoning", "the answer")


def test_imported_reasoning_without_stats_counts_as_done() -> None:
    backend = ScriptedBackend(script("new", "answer"))
    conversation = Conversation.from_history(
        [{"role": "user", "content": "q"}, {"role": REASONING_ROLE, "content": "imported"}]
    )
    TurnRunner(backend).run(conversation)
    assert [r.stage for r in backend.requests] == ["answer"]
    assert conversation.turns[0].reasoning == "imported"


def test_a_cancelled_reasoning_is_generated_again() -> None:
    backend = ScriptedBackend(script("full reasoning", "answer"))
    conversation = conversation_with("q")
    turn = conversation.turns[0]
    turn.reasoning, turn.reasoning_stats = "par", StageStats(stop_reason="cancelled")
    TurnRunner(backend).run(conversation)
    assert [r.stage for r in backend.requests] == ["reasoning", "answer"]
    assert turn.reasoning == "full reasoning"


# --- token budget --------------------------------------------------------------------------------


def test_cap_new_tokens() -> None:
    assert cap_new_tokens("reasoning", 10, 100, 3000) == 90
    assert cap_new_tokens("reasoning", 10, 100, 5) == 5
    assert cap_new_tokens("answer", 99, 100, 5) == 1
    for prompt in (100, 150):
        with pytest.raises(ContextOverflow) as info:
            cap_new_tokens("answer", prompt, 100, 5)
        assert (info.value.stage, info.value.prompt_tokens, info.value.limit) == ("answer", prompt, 100)


def test_context_overflow_message_carries_the_numbers() -> None:
    err = ContextOverflow("reasoning", 32_768, 32_000)
    assert isinstance(err, UserError) and err.exit_code == 2
    assert "32,768" in str(err) and "32,000" in str(err) and "reasoning" in str(err)
    assert "\n" not in str(err)


def test_overflow_at_stage_one_raises_and_leaves_the_conversation_untouched() -> None:
    backend = ScriptedBackend()
    conversation = conversation_with("a question that is too long for the limit")
    prompt_tokens = backend.count_tokens(conversation.stage_prompt(0, "reasoning"))
    before = conversation.to_dict()
    events: list[Any] = []
    with pytest.raises(ContextOverflow) as info:
        TurnRunner(backend, context_limit=prompt_tokens).run(conversation, events.append)
    assert (info.value.stage, info.value.prompt_tokens, info.value.limit) == (
        "reasoning", prompt_tokens, prompt_tokens,
    )  # fmt: skip
    assert conversation.to_dict() == before
    turn = conversation.turns[0]
    assert turn.reasoning is None and turn.reasoning_stats is None and turn.answer is None
    assert events == [] and backend.requests == []


def test_overflow_at_stage_two_is_recorded_on_the_answer() -> None:
    backend = ScriptedBackend(script("r1 r2 r3 r4 r5", "never"))
    conversation = conversation_with("q")
    prompt_tokens = backend.count_tokens(conversation.stage_prompt(0, "reasoning"))
    events: list[Any] = []
    with pytest.raises(ContextOverflow) as info:
        TurnRunner(backend, context_limit=prompt_tokens + 3).run(conversation, events.append)
    assert info.value.stage == "answer" and info.value.limit == prompt_tokens + 3
    turn = conversation.turns[0]
    assert turn.reasoning == "r1 r2 r3 "
    assert turn.reasoning_stats.stop_reason == "budget"
    assert turn.reasoning_stats.new_tokens == 3
    assert turn.answer == "" and turn.answer_stats.stop_reason == "error"
    assert f"{prompt_tokens + 3:,}-token" in turn.answer_stats.error
    assert turn.answer_stats.prompt_tokens == info.value.prompt_tokens > prompt_tokens + 3
    assert isinstance(events[-1], StageFinished) and events[-1].stage == "answer"
    assert not any(isinstance(e, StageStarted) and e.stage == "answer" for e in events)


def test_transformers_overflow_refuses_before_any_generation(
    qwen_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = GenerationSettings(max_new_tokens=5)
    conversation = conversation_with("a first question")
    run_with_timeout(lambda: TurnRunner(qwen_backend, settings).run(conversation))
    conversation.add_turn("a second question")
    prompt = conversation.stage_prompt(1, "reasoning")
    prompt_tokens = qwen_backend.count_tokens(prompt)
    cached_ids = list(qwen_backend.prefix.ids)
    before = conversation.to_dict()
    hook = ForwardHook(qwen_backend.model).install(monkeypatch)
    for limit in (prompt_tokens - 50, prompt_tokens):
        with pytest.raises(ContextOverflow) as info:
            TurnRunner(qwen_backend, settings, context_limit=limit).run(conversation)
        assert (info.value.stage, info.value.prompt_tokens, info.value.limit) == (
            "reasoning", prompt_tokens, limit,
        )  # fmt: skip
    assert hook.calls == 0
    assert conversation.to_dict() == before
    assert conversation.turns[1].reasoning is None
    assert qwen_backend.prefix.ids == cached_ids  # the cache is untouched too


@pytest.mark.parametrize("room, requested, expected", [(3, 100, 3), (1, 100, 1), (5, 2, 2)])
def test_transformers_max_new_tokens_capped_at_limit_minus_prompt(
    qwen_backend, monkeypatch: pytest.MonkeyPatch, room: int, requested: int, expected: int
) -> None:
    conversation = conversation_with("how long can you go on?")
    prompt = conversation.stage_prompt(0, "reasoning")
    prompt_tokens = qwen_backend.count_tokens(prompt)
    hook = ForwardHook(qwen_backend.model).install(monkeypatch)
    request = StageRequest(
        conversation.id,
        "reasoning",
        prompt,
        GenerationSettings(max_new_tokens=requested),
        context_limit=prompt_tokens + room,
    )
    stream = qwen_backend.stream(request)
    run_with_timeout(lambda: list(stream))
    assert stream.stats.new_tokens == len(stream.generated) == expected == hook.calls
    assert stream.stats.stop_reason == "budget"
    assert stream.stats.prompt_tokens + stream.stats.new_tokens <= prompt_tokens + room


def test_transformers_turn_stops_at_the_limit_and_records_the_answer_overflow(
    stopping_backend,
) -> None:
    conversation = conversation_with("hi")
    prompt_tokens = stopping_backend.count_tokens(conversation.stage_prompt(0, "reasoning"))
    limit = prompt_tokens + 5
    with pytest.raises(ContextOverflow) as info:
        run_with_timeout(lambda: TurnRunner(stopping_backend, context_limit=limit).run(conversation))
    assert info.value.stage == "answer"
    turn = conversation.turns[0]
    assert turn.reasoning == REASONING_TEXT[:5]
    assert turn.reasoning_stats.stop_reason == "budget"
    assert turn.answer == "" and turn.answer_stats.stop_reason == "error"
    assert isinstance(turn, Turn)


# --- GenerationSettings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_new_tokens", 0),
        ("max_new_tokens", -5),
        ("temperature", -0.1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("top_p", -1.0),
        ("top_k", -1),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", -1.0),
    ],
)
def test_generation_settings_rejects(field: str, value: float) -> None:
    with pytest.raises(UserError) as info:
        GenerationSettings(**{field: value})
    message = str(info.value)
    assert "\n" not in message and str(value) in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"max_new_tokens": 1},
        {"temperature": 0.0},
        {"temperature": 2.5},
        {"top_p": 1.0},
        {"top_p": 0.01},
        {"top_k": 0},
        {"repetition_penalty": 1.3},
        {"seed": 0},
    ],
)
def test_generation_settings_accepts(kwargs: dict[str, Any]) -> None:
    settings = GenerationSettings(**kwargs)
    for name, value in kwargs.items():
        assert getattr(settings, name) == value
    with pytest.raises(AttributeError):
        settings.max_new_tokens = 5  # type: ignore[misc]  # frozen


def test_generation_settings_default_to_the_checkpoint() -> None:
    settings = GenerationSettings()
    assert settings.max_new_tokens == 3000
    assert (settings.temperature, settings.top_p, settings.top_k) == (None, None, None)
    assert (settings.repetition_penalty, settings.seed) == (None, None)
