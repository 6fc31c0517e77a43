"""Streaming: incremental detokenization, both stages on real tokenizers, stop reasons, cancel within
one token, errors that reach the consumer instead of hanging it, and the generation-setting overrides."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from reasonchat.conversation import Conversation
from reasonchat.engine import (
    GenerationError,
    GenerationSettings,
    StageFinished,
    StageRequest,
    StageStarted,
    TextChunk,
    TurnRunner,
)
from reasonchat.engine.detokenize import REPLACEMENT, IncrementalDecoder
from reasonchat.template import (
    ASSISTANT_GENERATION_PROMPT,
    IM_END,
    REASONING_GENERATION_PROMPT,
    apply_chat_template,
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
from tests.helpers.models import ANSWER_TEXT, REASONING_TEXT

# Characters that the byte-level BPEs split across several tokens (each piece decodes to U+FFFD).
SPLIT_TEXT = "Sky 🦜 龘 𝔘𝔫𝔦 ẞ — naïve 你好 🙂!"


def decode(backend: Any, ids: list[int]) -> str:
    return backend.tokenizer.decode(ids, skip_special_tokens=True)


def stage_request(conversation: Conversation, stage: str = "reasoning", **settings: Any) -> StageRequest:
    return StageRequest(
        conversation_id=conversation.id,
        stage=stage,  # type: ignore[arg-type]
        prompt=conversation.stage_prompt(len(conversation.turns) - 1, stage),  # type: ignore[arg-type]
        settings=GenerationSettings(**settings),
    )


def new_conversation(*questions: str) -> Conversation:
    conversation = Conversation()
    for question in questions:
        conversation.add_turn(question)
    return conversation


def play(backend: Any, request: StageRequest) -> tuple[Any, list[str]]:
    stream = backend.stream(request)
    deltas = run_with_timeout(lambda: list(stream), 60)
    return stream, deltas


class Puppet:
    """Drives the real ``generate`` (cache, streamer, stopping criteria, decoder) to emit ``script``:
    each forward pass keeps its real work but its last logits are replaced to favour the next id."""

    def __init__(self, script: list[int]) -> None:
        self.script = script

    def __call__(self, model: Any, monkeypatch: pytest.MonkeyPatch) -> ForwardHook:
        script = self.script
        hook = ForwardHook(model)

        def forward(*args: Any, **kwargs: Any) -> Any:
            out = ForwardHook.__call__(hook, *args, **kwargs)
            step = min(hook.calls, len(script)) - 1
            logits = out.logits.clone()
            logits[:, -1, :] = -1e9
            logits[:, -1, script[step]] = 0.0
            out.logits = logits
            return out

        monkeypatch.setattr(model, "forward", forward)
        return hook


# --- IncrementalDecoder --------------------------------------------------------------------------


class CountingTokenizer:
    """Counts decode calls and how many ids each decodes."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.lengths: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        self.lengths.append(len(ids))
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def stream_text(tokenizer: Any, ids: list[int], skip: bool = True) -> tuple[str, list[str]]:
    decoder = IncrementalDecoder(tokenizer, skip_special_tokens=skip)
    deltas = [decoder.push(i) for i in ids]
    deltas.append(decoder.flush())
    return "".join(deltas), deltas


@pytest.fixture(scope="module")
def byte_tokenizer(byte_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(byte_tokenizer_dir)


def test_decoder_holds_back_split_characters_byte_tokens(byte_tokenizer) -> None:
    ids = byte_tokenizer(SPLIT_TEXT, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(SPLIT_TEXT.encode())  # one token per byte
    text, deltas = stream_text(byte_tokenizer, ids)
    assert text == SPLIT_TEXT == byte_tokenizer.decode(ids)
    assert not any(REPLACEMENT in d for d in deltas)
    # The parrot is 4 bytes: three pushes yield nothing, the fourth yields the whole character.
    start = len("Sky ".encode())
    assert deltas[start : start + 4] == ["", "", "", "🦜"]


def test_decoder_on_real_qwen_split_tokens(qwen_backend) -> None:
    tokenizer = qwen_backend.tokenizer
    ids = qwen_backend.encode(SPLIT_TEXT)
    pieces = [tokenizer.decode([i]) for i in ids]
    assert sum(REPLACEMENT in p for p in pieces) >= 4  # the test really splits characters
    text, deltas = stream_text(tokenizer, ids)
    assert text == SPLIT_TEXT
    assert not any(REPLACEMENT in d for d in deltas)


def test_decoder_skips_special_tokens(qwen_backend) -> None:
    tokenizer = qwen_backend.tokenizer
    ids = qwen_backend.encode(f"Hi{IM_END}\n<|reasoning|>there<|endoftext|>")
    text, _ = stream_text(tokenizer, ids)
    assert text == "Hi\nthere" == tokenizer.decode(ids, skip_special_tokens=True)
    text, _ = stream_text(tokenizer, ids, skip=False)
    assert text == f"Hi{IM_END}\n<|reasoning|>there<|endoftext|>"


def test_decoder_flush_matches_decode_of_a_dangling_partial_character(byte_tokenizer) -> None:
    ids = byte_tokenizer("ok 🙂", add_special_tokens=False)["input_ids"][:-2]  # cut the emoji
    text, deltas = stream_text(byte_tokenizer, ids)
    assert deltas[-1] == REPLACEMENT
    assert text == byte_tokenizer.decode(ids) == "ok " + REPLACEMENT


@pytest.mark.parametrize("seed", range(4))
def test_decoder_equals_decode_on_random_qwen_ids(qwen_backend, seed: int) -> None:
    # Random ids, weighted towards byte tokens, specials and ids past the tokenizer (151666..151935,
    # rows the real Qwen2.5 embedding has): the concatenation must equal one decode of all of them.
    tokenizer = qwen_backend.tokenizer
    rng = random.Random(seed)
    odd = list(range(188)) + list(range(151640, 151700)) + list(range(151900, 151936))
    for _ in range(60):
        ids = [
            rng.randrange(151936) if rng.random() < 0.5 else rng.choice(odd)
            for _ in range(rng.randint(1, 30))
        ]
        for skip in (True, False):
            text, _ = stream_text(tokenizer, ids, skip)
            assert text == tokenizer.decode(ids, skip_special_tokens=skip), ids


def test_decoder_equals_decode_on_random_bytes(byte_tokenizer) -> None:
    rng = random.Random(1)
    for _ in range(300):
        ids = [rng.randrange(len(byte_tokenizer)) for _ in range(rng.randint(1, 25))]
        text, _ = stream_text(byte_tokenizer, ids)
        assert text == byte_tokenizer.decode(ids, skip_special_tokens=True), ids


def test_decoder_cost_per_token_does_not_grow_with_paragraph_length(qwen_backend) -> None:
    # One long paragraph, no newline: TextIteratorStreamer would re-decode all of it on every token.
    def cost(words: int) -> tuple[int, int, int]:
        paragraph = " ".join(["naïve 你好 🦜 word"] * words)
        ids = qwen_backend.encode(paragraph)
        counting = CountingTokenizer(qwen_backend.tokenizer)
        text, _ = stream_text(counting, ids)
        assert text == paragraph
        return len(ids), len(counting.lengths), max(counting.lengths)

    short_tokens, short_calls, short_max = cost(20)
    long_tokens, long_calls, long_max = cost(400)
    assert long_tokens > 15 * short_tokens
    # Two decode calls per token (+2 for flush), each over a window of a few ids, whatever the length.
    assert short_calls == 2 * short_tokens + 2
    assert long_calls == 2 * long_tokens + 2
    assert long_max == short_max <= 6


# --- two stages on the real Qwen2.5 tokenizer ----------------------------------------------------


def test_both_stages_with_real_qwen_tokenizer_send_the_intended_prompts(
    qwen_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[StageRequest] = []
    original = qwen_backend.stream

    def capture(request: StageRequest) -> Any:
        sent.append(request)
        return original(request)

    monkeypatch.setattr(qwen_backend, "stream", capture)
    question = "Why is the sky blue? 天空 🙂"
    conversation = new_conversation(question)
    events: list[Any] = []
    turn = run_with_timeout(
        lambda: TurnRunner(qwen_backend, GenerationSettings(max_new_tokens=6)).run(
            conversation, events.append
        )
    )
    assert [r.stage for r in sent] == ["reasoning", "answer"]
    reasoning, answer = turn.reasoning, turn.answer
    assert reasoning is not None and answer is not None
    # A random model never stops on its own: both stages end on the cap, exactly.
    for stats in (turn.reasoning_stats, turn.answer_stats):
        assert stats.stop_reason == "budget"
        assert stats.new_tokens == 6
        assert stats.ttft_s is not None and stats.ttft_s > 0
    stage1 = (
        "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
        f"<|im_start|>user\n{question}<|im_end|>\n"
        "<|im_start|><|reasoning|>\n"
    )
    assert sent[0].prompt == stage1
    # The intended stage 2: system -> user -> reasoning -> assistant (not the card's second call).
    assert sent[1].prompt == stage1 + f"{reasoning}<|im_end|>\n<|im_start|>assistant\n"
    assert sent[1].prompt.endswith(ASSISTANT_GENERATION_PROMPT)
    assert not sent[1].prompt.endswith(REASONING_GENERATION_PROMPT)
    card_stage2 = apply_chat_template(conversation.history(), add_reasoning_generation_prompt=True)
    assert sent[1].prompt != card_stage2
    # The role is one special token, 151665, once per stage prompt, right after <|im_start|>.
    for request in sent:
        ids = qwen_backend.encode(request.prompt)
        assert ids.count(151665) == 1
        assert ids[ids.index(151665) - 1] == 151644
    assert turn.reasoning_stats.prompt_tokens == qwen_backend.count_tokens(sent[0].prompt)
    assert turn.answer_stats.prompt_tokens == qwen_backend.count_tokens(sent[1].prompt)
    # Events in protocol order.
    kinds = [(type(e).__name__, e.stage) for e in events if not isinstance(e, TextChunk)]
    assert kinds == [
        ("StageStarted", "reasoning"),
        ("StageFinished", "reasoning"),
        ("StageStarted", "answer"),
        ("StageFinished", "answer"),
    ]
    finished = [e for e in events if isinstance(e, StageFinished)]
    assert [f.text for f in finished] == [reasoning, answer]
    started = [e for e in events if isinstance(e, StageStarted)]
    assert started[0].prompt_tokens == turn.reasoning_stats.prompt_tokens
    assert started[0].context_limit == 32000


def test_deltas_concatenate_to_decode_of_generated_ids_split_characters(
    qwen_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through the real pipeline, the model emits Qwen tokens that split characters, then <|im_end|>.
    script = qwen_backend.encode(SPLIT_TEXT) + [151645]
    hook = Puppet(script)(qwen_backend.model, monkeypatch)
    conversation = new_conversation("split please")
    stream, deltas = play(qwen_backend, stage_request(conversation, max_new_tokens=100))
    assert stream.generated == script
    assert hook.calls == len(script)
    assert "".join(deltas) == decode(qwen_backend, stream.generated) == SPLIT_TEXT
    assert all(deltas) and not any(REPLACEMENT in d for d in deltas)
    assert len(deltas) < len(script) - 1  # split pieces were held back, not emitted as U+FFFD
    assert stream.stats.stop_reason == "eos"
    assert stream.stats.new_tokens == len(script)


@pytest.mark.parametrize("seed", [0, 1])
def test_deltas_concatenate_to_decode_when_sampling_random_bytes(stopping_backend, seed: int) -> None:
    # High temperature on the byte-level model: random bytes, most of them partial UTF-8.
    conversation = new_conversation("hi")
    stream, deltas = play(
        stopping_backend,
        stage_request(conversation, max_new_tokens=80, temperature=50.0, top_k=0, seed=seed),
    )
    assert "".join(deltas) == decode(stopping_backend, stream.generated)
    assert len(stream.generated) == stream.stats.new_tokens
    assert any(token >= 128 for token in stream.generated)


def card_loop(backend: Any, questions: list[str], max_new_tokens: int) -> list[tuple[str, str]]:
    """The model card's loop, verbatim in its calls, with the intended stage-2 prompt."""
    import torch

    model, tokenizer = backend.model, backend.tokenizer
    history = [{"role": "system", "content": "You are a helpful assistant"}]
    out = []
    for question in questions:
        history.append({"role": "user", "content": question})
        texts = []
        for role, flags in (("<|reasoning|>", {}), ("assistant", {"add_reasoning_generation_prompt": False,
                            "add_assistant_generation_prompt": True})):  # fmt: skip
            input_text = apply_chat_template(history, **flags)
            model_inputs = tokenizer([input_text], return_tensors="pt")
            with torch.no_grad():
                generated_ids = model.generate(model_inputs.input_ids, max_new_tokens=max_new_tokens)
            generated_ids = [o[len(i) :] for i, o in zip(model_inputs.input_ids, generated_ids)]
            response = tokenizer.batch_decode(generated_ids, skip_special_tokens=True)[0]
            history.append({"role": role, "content": response})
            texts.append(response)
        out.append((texts[0], texts[1]))
    return out


@pytest.mark.parametrize("model", ["stopping", "qwen"])
def test_greedy_engine_output_equals_the_card_loop(
    request: pytest.FixtureRequest, model: str
) -> None:
    # Settings default to the checkpoint's generation_config: greedy output is the card's output
    # (with the cache reused across stages and turns).
    backend = request.getfixturevalue(f"{model}_backend")
    questions = ["hi", "What is 2+2?"] if model == "stopping" else ["Why? 为什么 🙂", "And then?"]
    max_new = 60 if model == "stopping" else 7
    conversation = Conversation()
    runner = TurnRunner(backend, GenerationSettings(max_new_tokens=max_new))
    for question in questions:
        conversation.add_turn(question)
        run_with_timeout(lambda: runner.run(conversation))
    engine = [(t.reasoning, t.answer) for t in conversation.turns]
    assert engine == run_with_timeout(lambda: card_loop(backend, questions, max_new))
    if model == "stopping":
        assert engine == [(REASONING_TEXT, ANSWER_TEXT)] * 2


# --- the stopping model --------------------------------------------------------------------------


def test_stopping_model_both_stages_stop_on_im_end(stopping_backend) -> None:
    conversation = new_conversation("hi")
    generated: list[list[int]] = []
    original = stopping_backend.stream

    def capture(request: StageRequest) -> Any:
        stream = original(request)
        generated.append(stream.generated)
        return stream

    runner = TurnRunner(stopping_backend, GenerationSettings(max_new_tokens=60))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stopping_backend, "stream", capture)
        turn = run_with_timeout(lambda: runner.run(conversation))
    assert turn.reasoning == REASONING_TEXT
    assert turn.answer == ANSWER_TEXT
    im_end = stopping_backend.tokenizer.convert_tokens_to_ids(IM_END)
    for text, stats, ids in (
        (REASONING_TEXT, turn.reasoning_stats, generated[0]),
        (ANSWER_TEXT, turn.answer_stats, generated[1]),
    ):
        assert stats.stop_reason == "eos"
        assert ids[-1] == im_end
        assert stats.new_tokens == len(text.encode()) + 1
        assert len(stats.chunks) == len(text)  # one chunk per byte-token of ASCII text
        assert stats.chunks[-1][1] == len(text)
        assert stats.tokens_per_s is not None and stats.tokens_per_s > 0
    assert IM_END not in turn.reasoning + turn.answer


# --- cancel --------------------------------------------------------------------------------------


def cancel_at(call: int, cancel: Any) -> Any:
    """A forward action that cancels, from yet another thread, during forward pass ``call``."""

    def action(calls: int) -> None:
        if calls == call:
            thread = threading.Thread(target=cancel)
            thread.start()
            thread.join()

    return action


@pytest.mark.parametrize("at", [1, 2, 7])
def test_cancel_from_another_thread_stops_within_one_token(
    stopping_backend, monkeypatch: pytest.MonkeyPatch, at: int
) -> None:
    hook = ForwardHook(stopping_backend.model, cancel_at(at, stopping_backend.cancel))
    hook.install(monkeypatch)
    conversation = new_conversation("hi")
    stream, deltas = play(stopping_backend, stage_request(conversation, max_new_tokens=60))
    # Cancelled during the forward pass of token `at`: that token is the last one.
    assert hook.calls == at
    assert stream.stats.new_tokens == len(stream.generated) == at
    assert stream.stats.stop_reason == "cancelled"
    assert "".join(deltas) == REASONING_TEXT[:at]


def test_turn_runner_cancel_within_one_token_keeps_partial_and_skips_answer(
    stopping_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = TurnRunner(stopping_backend, GenerationSettings(max_new_tokens=60))
    ForwardHook(stopping_backend.model, cancel_at(5, runner.cancel)).install(monkeypatch)
    conversation = new_conversation("hi")
    events: list[Any] = []
    turn = run_with_timeout(lambda: runner.run(conversation, events.append))
    assert turn.reasoning == REASONING_TEXT[:5]
    assert turn.reasoning_stats.stop_reason == "cancelled"
    assert turn.reasoning_stats.new_tokens == 5
    assert turn.answer is None and turn.answer_stats is None
    assert not any(e.stage == "answer" for e in events)


def test_turn_runner_cancel_from_another_thread_while_streaming(qwen_backend) -> None:
    # Triggered by the consumer's own progress: the generator may be a few tokens ahead by then.
    runner = TurnRunner(qwen_backend, GenerationSettings(max_new_tokens=400))
    conversation = new_conversation("Tell me a long story")
    chunks = 0
    cancellers: list[threading.Thread] = []

    def on_event(event: Any) -> None:
        nonlocal chunks
        if isinstance(event, TextChunk):
            chunks += 1
            if chunks == 3:
                cancellers.append(threading.Thread(target=runner.cancel))
                cancellers[0].start()

    turn = run_with_timeout(lambda: runner.run(conversation, on_event))
    cancellers[0].join()
    stats = turn.reasoning_stats
    assert stats.stop_reason == "cancelled"
    assert 3 <= stats.new_tokens < 400
    assert turn.reasoning and turn.answer is None
    # The partial text is what the full greedy run starts with.
    reference = new_conversation("Tell me a long story")
    full, _ = play(qwen_backend, stage_request(reference, max_new_tokens=stats.new_tokens + 2))
    assert decode(qwen_backend, full.generated).startswith(turn.reasoning)


def test_cancel_set_before_iteration_generates_at_most_one_token(stopping_backend) -> None:
    request = stage_request(new_conversation("hi"), max_new_tokens=60)
    stream = stopping_backend.stream(request)
    request.cancel.set()
    deltas = run_with_timeout(lambda: list(stream))
    assert stream.stats.new_tokens <= 1
    assert stream.stats.stop_reason == "cancelled"
    assert "".join(deltas) == REASONING_TEXT[: stream.stats.new_tokens]


# --- errors reach the consumer, never a hang -----------------------------------------------------


def test_generate_raising_becomes_generation_error(
    stopping_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom in generate\nsecond line")

    monkeypatch.setattr(stopping_backend.model, "generate", boom)
    stream = stopping_backend.stream(stage_request(new_conversation("hi")))
    started = time.perf_counter()
    with pytest.raises(GenerationError) as info:
        run_with_timeout(lambda: list(stream), 10)
    assert time.perf_counter() - started < 5
    assert "boom in generate" in str(info.value) and "\n" not in str(info.value)
    assert "RuntimeError" in str(info.value)
    assert stream.stats.stop_reason == "error" and stream.stats.error == str(info.value)


def test_error_midway_keeps_partial_text_and_resets_the_cache(
    stopping_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = new_conversation("hi")
    runner = TurnRunner(stopping_backend, GenerationSettings(max_new_tokens=60))

    def fail(calls: int) -> None:
        if calls == 4:
            raise RuntimeError("boom at token 4")

    hook = ForwardHook(stopping_backend.model, fail).install(monkeypatch)
    turn = run_with_timeout(lambda: runner.run(conversation), 20)
    assert hook.calls == 4
    assert turn.reasoning == REASONING_TEXT[:3]
    assert turn.reasoning_stats.stop_reason == "error"
    assert "boom at token 4" in turn.reasoning_stats.error
    assert turn.answer is None and turn.answer_stats is None
    assert stopping_backend.prefix.conversation_id is None
    assert stopping_backend.prefix.ids == []
    # The backend is usable again (its lock was released), starting from an empty cache.
    monkeypatch.undo()
    retry = run_with_timeout(lambda: runner.run(conversation))
    assert retry.reasoning_stats.cached_tokens == 0
    assert (retry.reasoning, retry.answer) == (REASONING_TEXT, ANSWER_TEXT)


def test_generate_thread_that_dies_without_posting(
    stopping_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine import transformers_backend

    monkeypatch.setattr(
        transformers_backend._TransformersStream, "_generate", lambda self, sink, abandoned: None
    )
    stream = stopping_backend.stream(stage_request(new_conversation("hi")))
    started = time.perf_counter()
    with pytest.raises(GenerationError, match="ended without a result"):
        run_with_timeout(lambda: list(stream), 10)
    assert time.perf_counter() - started < 5
    assert stream.stats.stop_reason == "error"


def test_out_of_memory_is_reported_and_the_turn_kept(
    stopping_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    def oom(*args: Any, **kwargs: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(stopping_backend.model, "generate", oom)
    conversation = new_conversation("hi")
    turn = run_with_timeout(lambda: TurnRunner(stopping_backend).run(conversation))
    assert turn.reasoning == ""
    assert turn.reasoning_stats.stop_reason == "error"
    assert "out of GPU memory" in turn.reasoning_stats.error
    assert conversation.turns == [turn] and turn.user == "hi"


def test_consumer_leaving_early_stops_generation_and_frees_the_backend(stopping_backend) -> None:
    stream = stopping_backend.stream(stage_request(new_conversation("hi"), max_new_tokens=60))

    def take_two() -> list[str]:
        iterator = iter(stream)
        first = [next(iterator), next(iterator)]
        iterator.close()
        return first

    assert run_with_timeout(take_two, 10) == ["T", "h"]
    # The generating thread was stopped and joined when the consumer left.
    assert not any(t.name == "reasonchat-generate" for t in threading.enumerate())
    again, deltas = play(stopping_backend, stage_request(new_conversation("hi"), max_new_tokens=60))
    assert "".join(deltas) == REASONING_TEXT
    assert again.stats.stop_reason == "eos"


def test_a_second_concurrent_stream_is_refused(stopping_backend) -> None:
    first = stopping_backend.stream(stage_request(new_conversation("hi"), max_new_tokens=60))
    iterator = iter(first)
    assert next(iterator) == "T"
    second = stopping_backend.stream(stage_request(new_conversation("hi"), max_new_tokens=60))
    with pytest.raises(GenerationError, match="already generating"):
        list(second)
    assert "".join(["T", *run_with_timeout(lambda: list(iterator))]) == REASONING_TEXT


# --- settings and overrides ----------------------------------------------------------------------


def test_temperature_zero_is_greedy_even_if_the_checkpoint_samples(
    qwen_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = new_conversation("greedy?")
    greedy, _ = play(qwen_backend, stage_request(conversation, max_new_tokens=8))
    config = qwen_backend.model.generation_config
    monkeypatch.setattr(config, "do_sample", True)
    monkeypatch.setattr(config, "temperature", 5.0)
    monkeypatch.setattr(config, "top_k", 0)
    pinned, _ = play(qwen_backend, stage_request(conversation, max_new_tokens=8, temperature=0))
    assert pinned.generated == greedy.generated
    sampled, _ = play(qwen_backend, stage_request(conversation, max_new_tokens=8, seed=3))
    assert sampled.generated != greedy.generated  # the checkpoint's sampling config is honoured


def test_seed_makes_sampling_reproducible(stopping_backend) -> None:
    conversation = new_conversation("hi")

    def sample(seed: int) -> list[int]:
        stream, _ = play(
            stopping_backend,
            stage_request(conversation, max_new_tokens=20, temperature=3.0, top_k=0, seed=seed),
        )
        return stream.generated

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_generation_config_carries_overrides_and_stop_tokens(qwen_backend) -> None:
    request = stage_request(
        new_conversation("x"), temperature=0.7, top_p=0.9, top_k=20, repetition_penalty=1.1
    )
    config = qwen_backend.generation_config(request, 17)
    assert config.max_new_tokens == 17
    assert config.do_sample is True
    assert (config.temperature, config.top_p, config.top_k) == (0.7, 0.9, 20)
    assert config.repetition_penalty == 1.1
    assert set(config.eos_token_id) >= {151645, 151643}
    assert config.pad_token_id is not None
    # The checkpoint's own config is not modified.
    assert qwen_backend.model.generation_config.max_new_tokens != 17
    defaults = qwen_backend.generation_config(stage_request(new_conversation("x")), 5)
    assert defaults.do_sample == qwen_backend.model.generation_config.do_sample
