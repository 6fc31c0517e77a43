"""Prefix-cache reuse: one KV cache per conversation, reused across both stages and across turns,
cropped to the longest common prefix, never covering the whole prompt, and invisible in the output
(greedy texts with and without reuse are identical)."""

from __future__ import annotations

from typing import Any

import pytest

from reasonchat.conversation import Conversation, Turn
from reasonchat.engine import GenerationSettings, StageRequest, TurnRunner
from reasonchat.engine.prefix_cache import PrefixCache, common_prefix_length
from tests.helpers.engine_fixtures import (  # noqa: F401 - fixtures
    byte_tokenizer_dir,
    qwen_backend,
    qwen_backend_fresh,
    qwen_random_model_dir,
    run_with_timeout,
    stopping_backend,
    stopping_backend_fresh,
    stopping_model_dir,
)
from tests.helpers.models import ANSWER_TEXT, REASONING_TEXT

# --- PrefixCache on a fake cache -----------------------------------------------------------------


class FakeCache:
    """Stands in for DynamicCache: a length, and crop(n) that only takes a negative count (5.x)."""

    made = 0

    def __init__(self) -> None:
        FakeCache.made += 1
        self.length = 0
        self.crops: list[int] = []

    def get_seq_length(self) -> int:
        return self.length

    def crop(self, n: int) -> None:
        assert n < 0, "transformers 5 crops by a negative count"
        self.crops.append(n)
        self.length += n


def filled(prefix: PrefixCache, sequence: list[int]) -> None:
    """What generate does: the cache ends up holding every token of ``sequence`` but the last."""
    prefix.cache.length = len(sequence) - 1
    prefix.record(sequence)


def test_common_prefix_length() -> None:
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2, 3], [1, 2, 3]) == 3
    assert common_prefix_length([1, 2, 3], [1, 2]) == 2
    assert common_prefix_length([1, 2, 3], [1, 5, 3]) == 1
    assert common_prefix_length([9], [1]) == 0


def test_first_use_is_a_fresh_cache() -> None:
    prefix = PrefixCache(FakeCache)
    cache, cached = prefix.prepare("a", [1, 2, 3])
    assert cached == 0 and cache is prefix.cache and cache.length == 0


def test_an_extension_reuses_everything_cached() -> None:
    prefix = PrefixCache(FakeCache)
    cache, _ = prefix.prepare("a", [1, 2, 3])
    filled(prefix, [1, 2, 3, 4, 5])  # prompt + 2 generated; the cache holds 4 tokens
    assert prefix.ids == [1, 2, 3, 4]
    again, cached = prefix.prepare("a", [1, 2, 3, 4, 5, 6, 7])
    assert again is cache and cached == 4 and cache.crops == []


def test_a_prompt_identical_to_the_cached_ids_leaves_one_token_to_prefill() -> None:
    prefix = PrefixCache(FakeCache)
    prefix.prepare("a", [1, 2, 3, 4])
    filled(prefix, [1, 2, 3, 4, 5])
    cache, cached = prefix.prepare("a", [1, 2, 3, 4])  # all four cached: one must be left
    assert cached == 3
    assert cache.length == 3 and cache.crops == [-1]
    assert prefix.ids == [1, 2, 3]


def test_a_diverging_prompt_crops_to_the_common_prefix() -> None:
    prefix = PrefixCache(FakeCache)
    prefix.prepare("a", [1, 2, 3])
    filled(prefix, [1, 2, 3, 4, 5, 6])  # holds 5
    cache, cached = prefix.prepare("a", [1, 2, 9, 4, 5, 6, 7])  # an earlier token changed
    assert cached == 2 and cache.length == 2 and cache.crops == [-3]
    assert prefix.ids == [1, 2]


def test_a_shorter_prompt_within_the_cache_crops() -> None:
    prefix = PrefixCache(FakeCache)
    prefix.prepare("a", [1, 2, 3])
    filled(prefix, [1, 2, 3, 4, 5, 6, 7, 8])
    _, cached = prefix.prepare("a", [1, 2, 3, 4, 5])
    assert cached == 4 and prefix.cache.length == 4


def test_nothing_in_common_starts_over() -> None:
    prefix = PrefixCache(FakeCache)
    first, _ = prefix.prepare("a", [1, 2, 3])
    filled(prefix, [1, 2, 3, 4])
    cache, cached = prefix.prepare("a", [7, 8, 9])
    assert cached == 0 and cache is not first and cache.length == 0 and prefix.ids == []


def test_a_one_token_prompt_is_never_served_from_cache() -> None:
    prefix = PrefixCache(FakeCache)
    prefix.prepare("a", [1])
    filled(prefix, [1, 2, 3])
    _, cached = prefix.prepare("a", [1])
    assert cached == 0 and prefix.cache.length == 0


def test_switching_conversation_resets_and_switching_back_does_not_resurrect() -> None:
    prefix = PrefixCache(FakeCache)
    first, _ = prefix.prepare("a", [1, 2, 3])
    filled(prefix, [1, 2, 3, 4])
    other, cached = prefix.prepare("b", [1, 2, 3, 4, 5])
    assert cached == 0 and other is not first and prefix.conversation_id == "b"
    filled(prefix, [1, 2, 3, 4, 5, 6])
    back, cached = prefix.prepare("a", [1, 2, 3, 4, 5])
    assert cached == 0 and back is not other


def test_reset_forgets_everything() -> None:
    prefix = PrefixCache(FakeCache)
    prefix.prepare("a", [1, 2, 3])
    filled(prefix, [1, 2, 3, 4])
    prefix.reset()
    assert (prefix.conversation_id, prefix.ids, prefix.cache) == (None, [], None)
    _, cached = prefix.prepare("a", [1, 2, 3, 4, 5])
    assert cached == 0


def test_record_without_a_cache_is_harmless() -> None:
    prefix = PrefixCache(FakeCache)
    prefix.record([1, 2, 3])
    assert prefix.ids == []


# --- the transformers backend: reuse is invisible in the output ----------------------------------

STOP_QUESTIONS = ["hi", "What is 2+2?", "again?"]
QWEN_QUESTIONS = ["Why is the sky blue? 天空为什么是蓝色的 🙂", "And at sunset?", "thanks — 谢谢!"]


def run_turns(
    backend: Any,
    questions: list[str],
    settings: GenerationSettings,
    conversation: Conversation | None = None,
) -> Conversation:
    conversation = conversation or Conversation()
    runner = TurnRunner(backend, settings)
    for question in questions:
        conversation.add_turn(question)
        run_with_timeout(lambda: runner.run(conversation), 60)
    return conversation


def outputs(conversation: Conversation) -> list[tuple[Any, ...]]:
    return [
        (t.reasoning, t.answer, t.reasoning_stats.stop_reason, t.answer_stats.stop_reason,
         t.reasoning_stats.prompt_tokens, t.answer_stats.prompt_tokens, t.reasoning_stats.new_tokens,
         t.answer_stats.new_tokens)
        for t in conversation.turns
    ]  # fmt: skip


def cached(turn: Turn) -> tuple[int, int]:
    return turn.reasoning_stats.cached_tokens, turn.answer_stats.cached_tokens


def test_reuse_equals_fresh_over_three_turns_stopping_model(
    stopping_backend, stopping_backend_fresh
) -> None:
    settings = GenerationSettings(max_new_tokens=60)
    reused = run_turns(stopping_backend, STOP_QUESTIONS, settings)
    fresh = run_turns(stopping_backend_fresh, STOP_QUESTIONS, settings)
    assert outputs(reused) == outputs(fresh)
    assert all((t.reasoning, t.answer) == (REASONING_TEXT, ANSWER_TEXT) for t in reused.turns)
    assert all(cached(t) == (0, 0) for t in fresh.turns)
    first, second, third = reused.turns
    assert first.reasoning_stats.cached_tokens == 0
    # Stage 2 reuses stage 1: the cache holds its prompt and every reasoning token but the last
    # sampled (<|im_end|>); only "<|im_end|>\n<|im_start|>assistant\n" (13 byte tokens) is prefilled.
    for turn in reused.turns:
        r, a = turn.reasoning_stats, turn.answer_stats
        assert a.cached_tokens == r.prompt_tokens + r.new_tokens - 1
        assert a.prompt_tokens - a.cached_tokens == 13
    # The next turn's stage 1 reuses the whole previous turn.
    for before, after in ((first, second), (second, third)):
        a = before.answer_stats
        assert after.reasoning_stats.cached_tokens == a.prompt_tokens + a.new_tokens - 1


def test_reuse_equals_fresh_over_three_turns_real_qwen_tokenizer(
    qwen_backend, qwen_backend_fresh
) -> None:
    # Random text: re-encoding it does not always give back the generated ids; reuse must cope.
    settings = GenerationSettings(max_new_tokens=8)
    reused = run_turns(qwen_backend, QWEN_QUESTIONS, settings)
    fresh = run_turns(qwen_backend_fresh, QWEN_QUESTIONS, settings)
    assert outputs(reused) == outputs(fresh)
    assert all(cached(t) == (0, 0) for t in fresh.turns)
    assert reused.turns[0].reasoning_stats.cached_tokens == 0
    for turn in reused.turns[1:]:
        assert turn.reasoning_stats.cached_tokens > 0
    for turn in reused.turns:
        assert 0 < turn.answer_stats.cached_tokens < turn.answer_stats.prompt_tokens
        # Never more than what the previous stage held.
        assert turn.answer_stats.cached_tokens <= (
            turn.reasoning_stats.prompt_tokens + turn.reasoning_stats.new_tokens - 1
        )


def test_stage2_serves_at_least_90_percent_from_cache_real_qwen(
    qwen_backend, qwen_backend_fresh
) -> None:
    question = (
        "I have a long question about the colour of the sky, about Rayleigh scattering, about why "
        "sunsets are red and orange, why clouds are white, and why the sea looks blue on a clear "
        "day but grey under clouds. 请用中文和英文回答。 Please be thorough but keep it short. " * 2
    )
    settings = GenerationSettings(max_new_tokens=8)
    reused = run_turns(qwen_backend, [question], settings)
    fresh = run_turns(qwen_backend_fresh, [question], settings)
    assert outputs(reused) == outputs(fresh)
    answer = reused.turns[0].answer_stats
    assert answer.prompt_tokens > 100
    assert answer.cached_tokens >= 0.9 * answer.prompt_tokens


def test_switching_conversation_resets_the_cache(stopping_backend, stopping_backend_fresh) -> None:
    settings = GenerationSettings(max_new_tokens=60)
    a = run_turns(stopping_backend, ["hi"], settings)
    b = run_turns(stopping_backend, ["hi"], settings)  # same text, another conversation
    assert stopping_backend.prefix.conversation_id == b.id
    assert b.turns[0].reasoning_stats.cached_tokens == 0
    # Back to the first: its cache was dropped, and the output is still the fresh one.
    run_turns(stopping_backend, ["again?"], settings, conversation=a)
    assert a.turns[1].reasoning_stats.cached_tokens == 0
    assert a.turns[1].answer_stats.cached_tokens > 0
    reference = run_turns(stopping_backend_fresh, ["hi", "again?"], settings)
    assert outputs(a) == outputs(reference)


def test_editing_an_earlier_message_crops_to_the_common_prefix(
    qwen_backend, qwen_backend_fresh
) -> None:
    settings = GenerationSettings(max_new_tokens=8)
    conversation = run_turns(qwen_backend, QWEN_QUESTIONS[:2], settings)
    held = list(qwen_backend.prefix.ids)
    # Edit the first question (the user fixed a typo): the cached ids diverge inside turn 1.
    conversation.turns[0].user = "Why is the sea blue? 天空为什么是蓝色的 🙂"
    conversation.add_turn(QWEN_QUESTIONS[2])
    prompt_ids = qwen_backend.encode(conversation.stage_prompt(2, "reasoning"))
    expected = common_prefix_length(held, prompt_ids)
    system_and_user = len(qwen_backend.encode("<|im_start|>system\nYou are a helpful assistant"))
    assert system_and_user < expected < len(held)
    run_with_timeout(lambda: TurnRunner(qwen_backend, settings).run(conversation))
    assert conversation.turns[2].reasoning_stats.cached_tokens == expected
    # The same edited conversation without reuse gives the same third turn.
    copy = Conversation.from_dict(conversation.to_dict())
    copy.id = "fresh-" + conversation.id
    copy.turns[2] = Turn(user=QWEN_QUESTIONS[2])
    run_with_timeout(lambda: TurnRunner(qwen_backend_fresh, settings).run(copy))
    assert outputs(copy)[2] == outputs(conversation)[2]


def test_the_same_prompt_twice_leaves_one_token_to_prefill(
    stopping_backend, stopping_backend_fresh
) -> None:
    conversation = Conversation()
    conversation.add_turn("hi")
    prompt = conversation.stage_prompt(0, "reasoning")

    def once(backend: Any) -> Any:
        stream = backend.stream(StageRequest(conversation.id, "reasoning", prompt))
        text = "".join(run_with_timeout(lambda: list(stream)))
        return stream, text

    first, text1 = once(stopping_backend)
    # The cache now holds the prompt and the reasoning: more than the whole next prompt.
    assert len(stopping_backend.prefix.ids) > first.stats.prompt_tokens
    second, text2 = once(stopping_backend)
    fresh, text3 = once(stopping_backend_fresh)
    assert second.stats.cached_tokens == second.stats.prompt_tokens - 1
    assert text1 == text2 == text3 == REASONING_TEXT
    assert first.generated == second.generated == fresh.generated


def test_an_error_resets_the_cache_and_the_next_stage_matches_fresh(
    qwen_backend, qwen_backend_fresh, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine import GenerationError

    settings = GenerationSettings(max_new_tokens=6)
    conversation = run_turns(qwen_backend, QWEN_QUESTIONS[:1], settings)
    assert qwen_backend.prefix.ids

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    conversation.add_turn(QWEN_QUESTIONS[1])
    with monkeypatch.context() as patch:
        patch.setattr(qwen_backend.model, "generate", boom)
        stream = qwen_backend.stream(
            StageRequest(conversation.id, "reasoning", conversation.stage_prompt(1, "reasoning"))
        )
        with pytest.raises(GenerationError):
            run_with_timeout(lambda: list(stream), 10)
    assert qwen_backend.prefix.ids == [] and qwen_backend.prefix.cache is None
    run_with_timeout(lambda: TurnRunner(qwen_backend, settings).run(conversation))
    assert conversation.turns[1].reasoning_stats.cached_tokens == 0
    reference = run_turns(qwen_backend_fresh, QWEN_QUESTIONS[:2], settings)
    assert outputs(conversation) == outputs(reference)


def test_abandoned_stream_leaves_a_consistent_cache(stopping_backend, stopping_backend_fresh) -> None:
    # The consumer stops reading midway (record() never runs): the next stage must still be right.
    conversation = Conversation()
    conversation.add_turn("hi")
    stream = stopping_backend.stream(
        StageRequest(conversation.id, "reasoning", conversation.stage_prompt(0, "reasoning"))
    )

    def take_three() -> None:
        iterator = iter(stream)
        for _ in range(3):
            next(iterator)
        iterator.close()

    run_with_timeout(take_three)
    settings = GenerationSettings(max_new_tokens=60)
    run_with_timeout(lambda: TurnRunner(stopping_backend, settings).run(conversation))
    reference = run_turns(stopping_backend_fresh, ["hi"], settings)
    assert outputs(conversation) == outputs(reference)
    # (The abandoned stage's tokens are not reused: record() did not run. Reuse resumes after it.)
    assert conversation.turns[0].answer_stats.cached_tokens > 0


def test_no_cache_reuse_backend_never_reports_cached_tokens(stopping_backend_fresh) -> None:
    assert stopping_backend_fresh.prefix is None and not stopping_backend_fresh.cache_reuse
    conversation = run_turns(stopping_backend_fresh, ["hi", "again?"], GenerationSettings(60))
    assert all(cached(t) == (0, 0) for t in conversation.turns)
