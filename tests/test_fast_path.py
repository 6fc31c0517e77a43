"""The fast decode path (a bucketed static cache and a compiled decode step) gives the eager path's
greedy texts on CPU fp32, keeps prefix reuse across stages and turns, grows buckets without
recompiling, and falls back to the eager path with one notice when it cannot compile or fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reasonchat.conversation import Conversation
from reasonchat.engine import GenerationSettings, TurnRunner
from tests.helpers.engine_fixtures import byte_tokenizer_dir, run_with_timeout  # noqa: F401 - fixtures

DEMO_QUESTIONS = ["What is 48 + 19?", "What is 5 + 7?", "Tell me a joke"]
LLAMA_QUESTIONS = ["hi", "What is 2+2? 你好", "again?"]

_MEMO: dict[str, Any] = {}


def _memo(key: str, build: Any) -> Any:
    if key not in _MEMO:
        _MEMO[key] = build()
    return _MEMO[key]


def fast_and_eager(source: Path | str) -> dict[str, Any]:
    """Four backends on one loaded model: fast and eager, each with and without prefix reuse."""
    from reasonchat.engine.transformers_backend import TransformersBackend, load_backend

    notices: list[str] = []
    fast = load_backend(source, device="cpu", threads=1, compile=True, progress=notices.append)
    assert fast.fast is not None, fast.notice
    loaded = fast.loaded
    return {
        "fast": fast,
        "fast_fresh": TransformersBackend(loaded, cache_reuse=False, fast=True),
        "eager": TransformersBackend(loaded),
        "eager_fresh": TransformersBackend(loaded, cache_reuse=False),
        "progress": notices,
    }


@pytest.fixture(scope="module")
def demo() -> dict[str, Any]:
    from reasonchat.demo_model import model_dir

    return _memo("demo", lambda: fast_and_eager(model_dir()))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer_dir: Path) -> Path:
    return _memo("llama_dir", lambda: save_tiny_llama(byte_tokenizer_dir, tmp_path_factory.mktemp("llama")))


@pytest.fixture(scope="module")
def llama(llama_dir: Path) -> dict[str, Any]:
    return _memo("llama", lambda: fast_and_eager(llama_dir))


def save_tiny_llama(tokenizer_dir: Path, out: Path) -> Path:
    """SmolLM2's architecture (Llama, tied embeddings, grouped-query attention), tiny and random."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from reasonchat.template import END_OF_TEXT, IM_END
    from tests.helpers.models import add_reasoning_token

    tokenizer = add_reasoning_token(tokenizer_dir, out)
    torch.manual_seed(0)
    eos = [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(END_OF_TEXT)]
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=True,
        max_position_embeddings=4096, eos_token_id=eos, pad_token_id=eos[1],
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = eos
    model.save_pretrained(out)
    return out


def dialog(backend: Any, questions: list[str], tokens: int) -> list[tuple[Any, ...]]:
    conversation = Conversation()
    runner = TurnRunner(backend, GenerationSettings(max_new_tokens=tokens, temperature=0))
    for question in questions:
        conversation.add_turn(question)
        run_with_timeout(lambda: runner.run(conversation), 120)
    return [
        (t.reasoning, t.answer, t.reasoning_stats.stop_reason, t.answer_stats.stop_reason,
         t.reasoning_stats.cached_tokens, t.answer_stats.cached_tokens)
        for t in conversation.turns
    ]  # fmt: skip


def texts(outputs: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [o[:4] for o in outputs]


@pytest.fixture
def small_buckets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Buckets of 64, 128, 256, …: a three-turn dialog crosses several of them."""
    from reasonchat.engine import static_decode

    monkeypatch.setattr(static_decode, "FIRST_BUCKET", 64)


@pytest.mark.parametrize("model", ["demo", "llama"])
def test_fast_equals_eager_over_three_turns_with_and_without_reuse(
    model: str, request: pytest.FixtureRequest, small_buckets: None
) -> None:
    from reasonchat.engine import static_decode

    backends = request.getfixturevalue(model)
    questions, tokens = (DEMO_QUESTIONS, 200) if model == "demo" else (LLAMA_QUESTIONS, 24)
    graphs = static_decode.graphs_compiled()
    fast = dialog(backends["fast"], questions, tokens)
    fast_fresh = dialog(backends["fast_fresh"], questions, tokens)
    # The warm-up compiled one graph with dynamic shapes; three turns of both stages, prefix rewinds
    # and bucket growth (64 -> 128 -> 256 -> 512) compile nothing more.
    assert static_decode.graphs_compiled() == graphs
    assert backends["fast"].fast.cache.size >= 256
    eager = dialog(backends["eager"], questions, tokens)
    eager_fresh = dialog(backends["eager_fresh"], questions, tokens)
    assert texts(fast) == texts(fast_fresh) == texts(eager) == texts(eager_fresh)
    # Reuse is kept: the same tokens come from the cache as on the eager path, and every stage after
    # the first reuses some; without reuse nothing is cached.
    assert [o[4:] for o in fast] == [o[4:] for o in eager]
    assert all(o[5] > 0 for o in fast) and all(o[4] > 0 for o in fast[1:])
    assert all(o[4:] == (0, 0) for o in fast_fresh)
    if model == "demo":
        assert fast[0][1] == "48 + 19 = 67"


def test_the_warm_up_reports_through_the_loaders_progress(demo: dict[str, Any]) -> None:
    progress = demo["progress"]
    compiling = [m for m in progress if m.startswith("compiling the decode step")]
    done = [m for m in progress if m.startswith("decode step compiled in")]
    assert len(compiling) == len(done) == 1
    assert progress.index(compiling[0]) < progress.index(done[0]) == len(progress) - 1
    assert demo["fast"].fast.warmup_s > 0 and demo["fast"].fast.graphs_after_warmup == 1
    assert demo["fast"].notice is None


def test_a_stage_that_overflows_its_bucket_continues_in_the_next(demo: dict[str, Any], small_buckets: None) -> None:
    # 64-token buckets: a 150-token reasoning is generated in segments across two bucket moves.
    from reasonchat.engine import StageRequest

    conversation = Conversation()
    conversation.add_turn("What is 98765 + 43210?")
    prompt = conversation.stage_prompt(0, "reasoning")

    def once(backend: Any) -> tuple[str, list[int]]:
        settings = GenerationSettings(150, temperature=0)
        stream = backend.stream(StageRequest(conversation.id, "reasoning", prompt, settings))
        return "".join(run_with_timeout(lambda: list(stream), 60)), stream.generated

    fast_text, fast_ids = once(demo["fast"])
    eager_text, eager_ids = once(demo["eager_fresh"])
    assert fast_ids == eager_ids and fast_text == eager_text
    assert len(fast_ids) > 64 and demo["fast"].fast.cache.size >= 128


def test_the_compiled_thread_is_one_long_lived_thread(demo: dict[str, Any]) -> None:
    import threading

    seen: list[threading.Thread] = []
    thread = demo["fast"].compiled_thread()
    for _ in range(2):
        thread.run(lambda: seen.append(threading.current_thread()))
    assert seen[0] is seen[1] and seen[0] is not threading.current_thread()
    assert demo["fast_fresh"].compiled_thread() is thread  # one per loaded model


# --- falling back to the eager path ------------------------------------------------------------------


def test_an_unsupported_architecture_falls_back_with_one_notice(
    llama: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine.transformers_backend import TransformersBackend

    loaded = llama["fast"].loaded
    monkeypatch.setattr(loaded.model, "_can_compile_fullgraph", False)
    notices: list[str] = []
    backend = TransformersBackend(loaded, fast=True, progress=notices.append)
    assert backend.fast is None
    assert notices == [backend.notice] and "not available" in backend.notice
    assert texts(dialog(backend, LLAMA_QUESTIONS[:1], 12)) == texts(dialog(llama["eager"], LLAMA_QUESTIONS[:1], 12))


def test_a_compile_failure_falls_back_with_one_notice(llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.generation.configuration_utils import CompileConfig

    from reasonchat.engine import static_decode
    from reasonchat.engine.transformers_backend import TransformersBackend, load_backend

    def broken_compiler(graph: Any, inputs: Any) -> Any:
        raise RuntimeError("no compiler here")

    def broken_config(device: Any) -> CompileConfig:
        config = CompileConfig(fullgraph=True, dynamic=True, backend=broken_compiler, mode=None)
        config._compile_all_devices = True
        return config

    monkeypatch.setattr(static_decode, "compile_config", broken_config)
    notices: list[str] = []
    backend = load_backend(llama_dir, device="cpu", threads=1, compile=True, progress=notices.append)
    assert backend.fast is None
    assert notices[-1] == backend.notice and "compiling the decode step failed" in backend.notice
    assert sum("decoding eagerly" in m for m in notices) == 1
    eager = TransformersBackend(backend.loaded, cache_reuse=False)
    assert texts(dialog(backend, LLAMA_QUESTIONS, 12)) == texts(dialog(eager, LLAMA_QUESTIONS, 12))


def test_a_failure_after_the_warm_up_finishes_the_stage_eagerly(
    demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine.transformers_backend import TransformersBackend

    loaded = demo["fast"].loaded
    notices: list[str] = []
    backend = TransformersBackend(loaded, fast=True, progress=notices.append)
    assert backend.fast is not None

    def broken(config: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("graph replay failed")

        return call

    monkeypatch.setattr(loaded.model, "get_compiled_call", broken)
    outputs = dialog(backend, DEMO_QUESTIONS[:2], 200)
    monkeypatch.undo()
    assert backend.fast is None and "fast decoding failed" in backend.notice
    assert sum("decoding eagerly" in m for m in notices) == 1
    assert texts(outputs) == texts(dialog(demo["eager_fresh"], DEMO_QUESTIONS[:2], 200))
    # The eager path took the cache over: the second turn still reuses the first.
    assert outputs[1][4] > 0


def test_bench_compares_eager_and_fast_side_by_side(demo: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.bench.local import run_bench
    from reasonchat.cli.bench_command import print_tables

    result = run_bench(
        demo["eager"], [], decode_tokens=24, fast_backend=demo["fast"], fast_history_tokens=300
    )
    f = result.fast_path
    assert f is not None and f.fast is not None and f.notice is None
    assert f.eager.decode_tokens_per_s > 0 and f.fast.decode_tokens_per_s > 0 and f.ratio > 0
    assert f.weight_bytes_per_token == sum(p.numel() * 4 for p in demo["fast"].model.parameters())
    assert f.read_bandwidth_bytes_per_s > 0 and 0 < f.eager.bound_fraction
    assert f.fast.warmup_s == demo["fast"].fast.warmup_s > 0
    assert f.recompiles == 0 and f.identical_token_share == 1.0
    assert f.stage2_cached_tokens >= 0.9 * f.stage2_prompt_tokens >= 270
    assert f.eager.stage2_ttft_s > 0 and f.fast.stage2_ttft_s > 0
    assert f.eager.long_decode_tokens_per_s > 0 and f.fast.long_decode_tokens_per_s > 0
    data = result.to_json()["fast_path"]
    assert data["ratio"] == f.ratio and data["bound_tokens_per_s"] == f.bound_tokens_per_s
    names = {t[0] for t in result.targets()}
    assert "fast decode / eager decode" in names and "fast decode recompiles after the warm-up" in names
    print_tables(result)
    out = capsys.readouterr().out
    assert "Decode paths" in out and "recompiles after the warm-up 0" in out


def test_buckets_double_from_1024_keep_what_they_hold_and_their_buffers() -> None:
    import torch
    from transformers import LlamaConfig

    from reasonchat.engine.static_decode import BucketedCache, bucket_for

    assert [bucket_for(n) for n in (1, 1024, 1025, 5000, 32000)] == [1024, 1024, 2048, 8192, 32768]
    config = LlamaConfig(
        vocab_size=10, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1,
    )  # fmt: skip
    cache = BucketedCache(config)
    keys, values = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    for layer in range(2):
        cache.update(keys, values, layer)
    first = cache.layers[0].keys.data_ptr()
    cache.fit(1024)  # fits: nothing moves
    assert cache.size == 1024 and cache.layers[0].keys.data_ptr() == first
    cache.fit(1500)
    assert cache.size == 2048 and cache.length() == 5
    assert all(layer.keys.shape[2] == 2048 for layer in cache.layers)
    assert torch.equal(cache.layers[1].keys[:, :, :5], keys) and torch.equal(cache.layers[1].values[:, :, :5], values)
    cache.fit(10)  # never shrinks within a conversation
    assert cache.size == 2048
    second = cache.layers[0].keys.data_ptr()
    cache.empty()
    assert (cache.size, cache.length()) == (1024, 0) and cache.layers[0].keys.data_ptr() == first
    cache.fit(2000)  # the 2k bucket's buffers are kept, not made again (CUDA graphs recorded them)
    assert cache.layers[0].keys.data_ptr() == second and cache.length() == 0


def test_a_prefill_into_the_static_cache_attends_over_the_filled_slots_only(
    llama_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suffix prefilled at 8k tokens into a 16k bucket must not attend over (and copy) 16k keys: the
    fast path's stage-2 first token would come later than the eager path's."""
    import torch
    from transformers import AutoModelForCausalLM, DynamicCache, StaticCache

    from reasonchat.engine import static_decode

    model = AutoModelForCausalLM.from_pretrained(llama_dir, attn_implementation="sdpa").eval()
    assert static_decode.use_packed_decode_attention(model)
    seen: list[int] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query: Any, key: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(key.shape[-2])
        return sdpa(query, key, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    prompt, suffix = torch.arange(3, 13)[None], torch.arange(20, 23)[None]
    logits = {}
    with torch.no_grad():
        for name, cache in (("static", StaticCache(config=model.config, max_cache_len=64)),
                            ("dynamic", DynamicCache(config=model.config))):  # fmt: skip
            model(prompt, past_key_values=cache, use_cache=True)
            seen.clear()
            out = model(suffix, past_key_values=cache, use_cache=True, cache_position=torch.arange(10, 13))
            logits[name] = out.logits
            assert seen == [13, 13], (name, seen)  # both layers, the 13 filled slots of 64
    torch.testing.assert_close(logits["static"], logits["dynamic"])
