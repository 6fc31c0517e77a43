"""``reasonchat bench``: the engine against the model card's loop, side by side in one process.

The card's loop re-tokenizes and re-prefills the whole conversation for every stage. The engine keeps a
KV cache per conversation and prefills only what changed. Measured at each history length:
stage-2 time to first token (the reasoning was just generated) and next-turn time to first token
(a new question after a full turn); then, at the longest history, what the stage operations cost
(re-answering an edited reasoning, thinking more) with the cache and cold; then decode speed of bare
``model.generate`` against the engine's streaming path on the same prompt and token count. Last, the
eager decode path against the fast one (``engine.static_decode``), side by side on the same loaded
model: decode tokens/s against the memory-bandwidth bound, warm-up, recompiles, identical tokens, and
stage-2 time to first token at a long history with reuse.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reasonchat.bench.history import synthetic_conversation, synthetic_reasoning
from reasonchat.bench.sampling import SamplingResult, bench_sampling
from reasonchat.bench.timing import Report, timed_stage
from reasonchat.conversation import Conversation
from reasonchat.engine.transformers_backend import TransformersBackend


@dataclass
class HistoryResult:
    history_tokens: int
    stage2_prompt_tokens: int
    stage2_cached_tokens: int
    naive_stage2_ttft_s: float
    engine_stage2_ttft_s: float
    naive_next_turn_ttft_s: float
    engine_next_turn_ttft_s: float

    @property
    def stage2_speedup(self) -> float:
        return self.naive_stage2_ttft_s / self.engine_stage2_ttft_s

    @property
    def next_turn_speedup(self) -> float:
        return self.naive_next_turn_ttft_s / self.engine_next_turn_ttft_s

    @property
    def stage2_cached_fraction(self) -> float:
        return self.stage2_cached_tokens / self.stage2_prompt_tokens


@dataclass
class SteeringResult:
    """What the stage operations cost with the cache against a cold re-prefill of the same prompt:
    re-answering after the reasoning's last line was edited, and thinking more after an answer."""

    history_tokens: int
    reasoning_tokens: int
    reanswer_prompt_tokens: int
    reanswer_cached_tokens: int
    reanswer_ttft_s: float
    cold_reanswer_ttft_s: float
    think_more_prompt_tokens: int
    think_more_cached_tokens: int
    think_more_ttft_s: float
    cold_think_more_ttft_s: float

    @property
    def reanswer_prefilled_fraction(self) -> float:
        return 1 - self.reanswer_cached_tokens / self.reanswer_prompt_tokens

    @property
    def think_more_prefilled_tokens(self) -> int:
        return self.think_more_prompt_tokens - self.think_more_cached_tokens


@dataclass
class DecodeResult:
    tokens: int
    bare_tokens_per_s: float
    engine_tokens_per_s: float

    @property
    def ratio(self) -> float:
        return self.engine_tokens_per_s / self.bare_tokens_per_s


@dataclass
class PathFigures:
    """One decode path's figures in the eager-vs-fast comparison."""

    decode_tokens_per_s: float
    bound_fraction: float  # of the bandwidth bound
    warmup_s: float = 0.0
    stage2_ttft_s: float | None = None
    # Decode tokens/s of the reasoning stage at that history (the cache holds all of it).
    long_decode_tokens_per_s: float | None = None


@dataclass
class FastPathResult:
    """Eager vs fast decoding on one loaded model, measured in the same rounds."""

    tokens: int
    weight_bytes_per_token: int
    read_bandwidth_bytes_per_s: float
    eager: PathFigures
    fast: PathFigures | None  # None: the fast path was not available (``notice`` says why)
    notice: str | None = None
    recompiles: int = 0  # graphs compiled after the warm-up, over the whole comparison
    identical_token_share: float | None = None
    stage2_history_tokens: int = 0
    stage2_prompt_tokens: int = 0
    stage2_cached_tokens: int = 0

    @property
    def bound_tokens_per_s(self) -> float:
        return self.read_bandwidth_bytes_per_s / self.weight_bytes_per_token

    @property
    def ratio(self) -> float | None:
        return self.fast.decode_tokens_per_s / self.eager.decode_tokens_per_s if self.fast else None


@dataclass
class BenchResult:
    model: str
    machine: dict[str, Any]
    history: list[HistoryResult] = field(default_factory=list)
    steering: list[SteeringResult] = field(default_factory=list)
    decode: DecodeResult | None = None
    fast_path: FastPathResult | None = None
    sampling: SamplingResult | None = None

    def targets(self) -> list[tuple[str, float, str, bool]]:
        """(name, measured, target, met) for the issue's targets, at the longest history measured."""
        out = []
        if self.history:
            longest = max(self.history, key=lambda h: h.history_tokens)
            out.append(
                (
                    f"stage-2 TTFT engine/naive at {longest.history_tokens:,} tokens",
                    1 / longest.stage2_speedup,
                    "<= 0.10",
                    longest.stage2_speedup >= 10,
                )
            )
            out.append(
                (
                    "stage-2 prompt served from cache",
                    longest.stage2_cached_fraction,
                    ">= 0.95",
                    longest.stage2_cached_fraction >= 0.95,
                )
            )
        if self.steering:
            s = max(self.steering, key=lambda s: s.history_tokens)
            at = f"at {s.history_tokens:,} + {s.reasoning_tokens:,} reasoning tokens"
            fraction = s.reanswer_prefilled_fraction
            out.append((f"re-answer prefill share of the answer prompt {at}", fraction, "<= 0.05", fraction <= 0.05))
            # The cache always leaves one prompt token to prefill; a re-split at the seam may add one.
            fresh = s.think_more_prefilled_tokens
            out.append((f"think-more prompt tokens prefilled {at}", fresh, "<= 2", fresh <= 2))
        if self.decode:
            out.append(
                ("streaming decode / bare generate", self.decode.ratio, ">= 0.95", self.decode.ratio >= 0.95)
            )
        f = self.fast_path
        if f and f.ratio is not None:
            # Issue 15: >= 1.25x on CPU (SmolLM2-135M, 1 thread), >= 3x on a GPU for a 0.5B model.
            wanted = 3.0 if self.machine.get("gpu") else 1.25
            out.append(("fast decode / eager decode", f.ratio, f">= {wanted}", f.ratio >= wanted))
            out.append(("fast decode recompiles after the warm-up", f.recompiles, "0", f.recompiles == 0))
            if self.machine.get("gpu") and f.fast:
                # Issue 15 asks this of a ~1.5B model; a 0.5B one is further from it (launches weigh more).
                share = f.fast.bound_fraction
                out.append(("fast decode share of the bandwidth bound", share, ">= 0.50", share >= 0.5))
            at = f.stage2_history_tokens
            # "Never slower" than eager: decoding at a long context, and the first token after it.
            eager, fast = f.eager, f.fast
            if fast and fast.long_decode_tokens_per_s and eager.long_decode_tokens_per_s:
                ratio = fast.long_decode_tokens_per_s / eager.long_decode_tokens_per_s
                out.append((f"fast / eager decode at {at:,} tokens", ratio, ">= 1.00", ratio >= 1.0))
            if fast and fast.stage2_ttft_s and eager.stage2_ttft_s:
                ratio = fast.stage2_ttft_s / eager.stage2_ttft_s
                out.append((f"fast / eager stage-2 TTFT at {at:,} tokens", ratio, "<= 1.00", ratio <= 1.0))
            naive = {h.history_tokens: h.naive_stage2_ttft_s for h in self.history}
            if f.fast and f.fast.stage2_ttft_s and at in naive:
                share = f.fast.stage2_ttft_s / naive[at]
                out.append((f"fast stage-2 TTFT/naive at {at:,} tokens", share, "<= 0.10", share <= 0.1))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "machine": self.machine,
            "history": [
                asdict(h)
                | {
                    "stage2_speedup": h.stage2_speedup,
                    "next_turn_speedup": h.next_turn_speedup,
                    "stage2_cached_fraction": h.stage2_cached_fraction,
                }
                for h in self.history
            ],
            "steering": [
                asdict(s)
                | {
                    "reanswer_prefilled_fraction": s.reanswer_prefilled_fraction,
                    "think_more_prefilled_tokens": s.think_more_prefilled_tokens,
                }
                for s in self.steering
            ],
            "decode": asdict(self.decode) | {"ratio": self.decode.ratio} if self.decode else None,
            "fast_path": (
                asdict(self.fast_path)
                | {"ratio": self.fast_path.ratio, "bound_tokens_per_s": self.fast_path.bound_tokens_per_s}
                if self.fast_path
                else None
            ),
            "sampling": self.sampling.to_json() if self.sampling else None,
            "targets": [
                {"name": n, "measured": m, "target": t, "met": ok} for n, m, t, ok in self.targets()
            ],
        }


def machine_info() -> dict[str, Any]:
    import os
    import platform

    import torch
    import transformers

    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


class Bench:
    def __init__(self, backend: TransformersBackend, *, stage_tokens: int = 32, report: Report | None = None) -> None:
        self.backend = backend
        self.stage_tokens = stage_tokens
        self.report = report or (lambda message: None)

    # The card's loop: tokenizer([text]) and generate from scratch, for every stage.
    def naive_ttft(self, prompt: str) -> float:
        import torch

        model, tokenizer = self.backend.model, self.backend.tokenizer
        start = time.perf_counter()
        inputs = tokenizer([prompt], return_tensors="pt").to(self.backend.loaded.input_device)
        model.generate(
            inputs.input_ids,
            attention_mask=inputs.attention_mask,
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=self.backend.loaded.eos_ids[0],
        )
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def history(self, history_tokens: int) -> HistoryResult:
        self.report(f"history {history_tokens:,} tokens: building the conversation")
        conversation = synthetic_conversation(self.backend, history_tokens)
        self.backend.reset()
        index = len(conversation.turns) - 1
        turn = conversation.turns[index]
        self.report(f"history {history_tokens:,}: engine stage 1 (cold prefill, fills the cache)")
        _, turn.reasoning, _ = timed_stage(self.backend, conversation, "reasoning", self.stage_tokens)
        self.report(f"history {history_tokens:,}: engine stage 2")
        engine_s2, turn.answer, s2_stats = timed_stage(self.backend, conversation, "answer", self.stage_tokens)
        self.report(f"history {history_tokens:,}: naive stage 2")
        naive_s2 = self.naive_ttft(conversation.stage_prompt(index, "answer"))
        conversation.add_turn("And what should we do next?")
        self.report(f"history {history_tokens:,}: engine next turn")
        engine_next, _, _ = timed_stage(self.backend, conversation, "reasoning", self.stage_tokens)
        self.report(f"history {history_tokens:,}: naive next turn")
        naive_next = self.naive_ttft(conversation.stage_prompt(index + 1, "reasoning"))
        return HistoryResult(
            history_tokens=history_tokens,
            stage2_prompt_tokens=s2_stats.prompt_tokens,
            stage2_cached_tokens=s2_stats.cached_tokens,
            naive_stage2_ttft_s=naive_s2,
            engine_stage2_ttft_s=engine_s2,
            naive_next_turn_ttft_s=naive_next,
            engine_next_turn_ttft_s=engine_next,
        )

    def steering(self, history_tokens: int, reasoning_tokens: int) -> SteeringResult:
        """Re-answer after editing the reasoning's last line, and think more, each timed with the
        cache the turn left and again cold (the cache reset: the card's loop would prefill it all)."""
        where = f"steering at {history_tokens:,} + {reasoning_tokens:,}"
        conversation = synthetic_conversation(self.backend, history_tokens, id_prefix="bench-steer")
        index = len(conversation.turns) - 1
        turn = conversation.turns[index]
        turn.reasoning = synthetic_reasoning(self.backend, reasoning_tokens)
        self.backend.reset()
        self.report(f"{where}: the first answer (fills the cache)")
        timed_stage(self.backend, conversation, "answer", self.stage_tokens)
        *kept, _last = turn.reasoning.split("\n")
        turn.reasoning = "\n".join([*kept, "On second thought the result is 3000."])
        self.report(f"{where}: re-answer from the edited reasoning")
        reanswer_s, _, reanswer = timed_stage(self.backend, conversation, "answer", self.stage_tokens)
        self.backend.reset()
        self.report(f"{where}: re-answer cold")
        cold_reanswer_s, _, _ = timed_stage(self.backend, conversation, "answer", self.stage_tokens)
        # The cache now holds the answer prompt, as after any answer: think more continues its reasoning.
        prompt = conversation.continuation_prompt(index)
        self.report(f"{where}: think more")
        think_s, _, think = timed_stage(self.backend, conversation, "reasoning", self.stage_tokens, prompt)
        self.backend.reset()
        self.report(f"{where}: think more cold")
        cold_think_s, _, _ = timed_stage(self.backend, conversation, "reasoning", self.stage_tokens, prompt)
        return SteeringResult(
            history_tokens=history_tokens,
            reasoning_tokens=reasoning_tokens,
            reanswer_prompt_tokens=reanswer.prompt_tokens,
            reanswer_cached_tokens=reanswer.cached_tokens,
            reanswer_ttft_s=reanswer_s,
            cold_reanswer_ttft_s=cold_reanswer_s,
            think_more_prompt_tokens=think.prompt_tokens,
            think_more_cached_tokens=think.cached_tokens,
            think_more_ttft_s=think_s,
            cold_think_more_ttft_s=cold_think_s,
        )

    def decode(self, tokens: int, rounds: int = 3) -> DecodeResult:
        """Tokens/s after the first token: bare ``generate`` vs the engine's stream, same prompt and count."""
        # The answer stage: an instruct model continues "assistant" at length, whatever its training
        # on the reasoning role.
        conversation = Conversation(id="bench-decode")
        turn = conversation.add_turn("Write a long story about a lighthouse keeper and a storm.")
        turn.reasoning = "The user wants a long story. I will write one with a beginning, a middle and an end."
        prompt = conversation.stage_prompt(0, "answer")
        engine_rates, bare_rates = [], []
        for round_ in range(rounds):
            self.report(f"decode round {round_ + 1}/{rounds}: engine")
            self.backend.reset()
            _, _, stats = timed_stage(self.backend, conversation, "answer", tokens)
            n = stats.new_tokens
            if n < 8:
                raise RuntimeError(f"the model stopped after {n} tokens; decode speed needs a longer output")
            engine_rates.append((n - 1) / stats.decode_s)
            self.report(f"decode round {round_ + 1}/{rounds}: bare generate ({n} tokens)")
            bare_rates.append(self._bare_rate(prompt, n))
        return DecodeResult(tokens, statistics.median(bare_rates), statistics.median(engine_rates))

    def _bare_rate(self, prompt: str, tokens: int) -> float:
        model, tokenizer = self.backend.model, self.backend.tokenizer
        inputs = tokenizer([prompt], return_tensors="pt").to(self.backend.loaded.input_device)

        def timed(n: int) -> float:
            start = time.perf_counter()
            model.generate(
                inputs.input_ids,
                attention_mask=inputs.attention_mask,
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                pad_token_id=self.backend.loaded.eos_ids[0],
            )
            return time.perf_counter() - start

        # Prefill + first token are timed separately and subtracted, as the engine's decode_s does.
        first = timed(1)
        return (tokens - 1) / (timed(tokens) - first)


def weight_bytes_per_token(model: Any) -> int:
    """Bytes of weights one decode step reads: every parameter once, except an input embedding that
    is not also the output layer (a step reads one row of it)."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    embedding = model.get_input_embeddings().weight
    output = model.get_output_embeddings()
    if output is None or output.weight.data_ptr() != embedding.data_ptr():
        total -= embedding.numel() * embedding.element_size()
    return total


def read_bandwidth(device: Any, rounds: int = 5) -> float:
    """Bytes/s of reading one large tensor (a sum over it), the best of ``rounds``: the memory
    bandwidth a decode step, which reads every weight once, can reach at most."""
    import torch

    # Far beyond any cache; on a GPU, long enough that launching and syncing are noise.
    megabytes = 2048 if torch.device(device).type == "cuda" else 512
    x = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32, device=device)
    best = float("inf")
    for _ in range(rounds + 1):
        if x.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        x.sum().item()
        best = min(best, time.perf_counter() - start)
    del x
    return megabytes * 2**20 / best


FIXED_DIALOGS = (
    "What is 482 + 1937?",
    "Explain why the sky is blue in two sentences.",
    "Write a haiku about a lighthouse.",
    "List three prime numbers and say why they are prime.",
)


class FastPathBench:
    """Eager and fast backends on the same loaded model, measured in interleaved rounds."""

    def __init__(
        self, eager: TransformersBackend, fast: TransformersBackend, *, report: Report | None = None
    ) -> None:
        self.eager, self.fast = eager, fast
        self.report = report or (lambda message: None)

    def run(self, tokens: int, history_tokens: int, rounds: int = 3) -> FastPathResult:
        from reasonchat.engine import static_decode

        model = self.eager.model
        self.report("measuring the memory read bandwidth")
        bandwidth = read_bandwidth(self.eager.loaded.input_device)
        per_token = weight_bytes_per_token(model)
        graphs = static_decode.graphs_compiled()
        fast = self.fast if self.fast.fast is not None else None
        rates: dict[str, list[float]] = {"eager": [], "fast": []}
        for round_ in range(rounds):
            for name, backend in (("eager", self.eager), ("fast", fast)):
                if backend is None:
                    continue
                self.report(f"eager vs fast, round {round_ + 1}/{rounds}: {name} decode")
                rates[name].append(self._decode_rate(backend, tokens))
        same = self._identical_share(fast, tokens) if fast else None
        ttft: dict[str, float | None] = {"eager": None, "fast": None}
        long_rate: dict[str, float | None] = {"eager": None, "fast": None}
        prompt = cached = 0
        if history_tokens:
            for name, backend in (("eager", self.eager), ("fast", fast)):
                if backend is not None:
                    self.report(f"eager vs fast: {name} stage 2 at {history_tokens:,} tokens of history")
                    ttft[name], long_rate[name], prompt, cached = self._stage2(backend, history_tokens)
        bound = bandwidth / per_token

        def figures(name: str, warmup: float) -> PathFigures:
            rate = statistics.median(rates[name])
            return PathFigures(rate, rate / bound, warmup, ttft[name], long_rate[name])

        return FastPathResult(
            tokens=tokens,
            weight_bytes_per_token=per_token,
            read_bandwidth_bytes_per_s=bandwidth,
            eager=figures("eager", 0.0),
            fast=figures("fast", fast.fast.warmup_s) if fast and fast.fast else None,
            notice=self.fast.notice,
            recompiles=static_decode.graphs_compiled() - graphs,
            identical_token_share=same,
            stage2_history_tokens=history_tokens,
            stage2_prompt_tokens=prompt,
            stage2_cached_tokens=cached,
        )

    @staticmethod
    def _decode_rate(backend: TransformersBackend, tokens: int) -> float:
        conversation = Conversation(id="bench-fast-decode")
        turn = conversation.add_turn("Write a long story about a lighthouse keeper and a storm.")
        turn.reasoning = "The user wants a long story. I will write one with a beginning, a middle and an end."
        backend.reset()
        _, _, stats = timed_stage(backend, conversation, "answer", tokens)
        if stats.new_tokens < 8:
            raise RuntimeError(f"the model stopped after {stats.new_tokens} tokens; decode speed needs more")
        return (stats.new_tokens - 1) / stats.decode_s

    def _identical_share(self, fast: TransformersBackend, tokens: int) -> float:
        """The share of greedy token positions where the fast path chose the eager path's token, over
        a fixed set of two-stage dialogs (up to the first difference, everything after counts as
        different: a different token changes the rest)."""
        same = total = 0
        for i, question in enumerate(FIXED_DIALOGS):
            ids = {}
            for name, backend in (("eager", self.eager), ("fast", fast)):
                conversation = Conversation(id=f"bench-same-{i}")
                conversation.add_turn(question)
                backend.reset()
                seen: list[int] = []
                for stage in ("reasoning", "answer"):
                    stream = backend.stream(_greedy_request(conversation, stage, tokens))
                    text = "".join(stream)
                    seen += stream.generated
                    setattr(conversation.turns[0], stage, text)
                ids[name] = seen
            a, b = ids["eager"], ids["fast"]
            n = max(len(a), len(b))
            agree = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
            same, total = same + agree, total + n
        return same / total if total else 1.0

    @staticmethod
    def _stage2(backend: TransformersBackend, history_tokens: int) -> tuple[float, float | None, int, int]:
        conversation = synthetic_conversation(backend, history_tokens, id_prefix="bench-fast")
        backend.reset()
        turn = conversation.turns[-1]
        _, turn.reasoning, first = timed_stage(backend, conversation, "reasoning", 32)
        rate = (first.new_tokens - 1) / first.decode_s if first.new_tokens > 1 and first.decode_s else None
        _, _, stats = timed_stage(backend, conversation, "answer", 32)
        # To the first token, not the first text: a random-weight model's tokens may decode to nothing.
        assert stats.ttft_s is not None
        return stats.ttft_s, rate, stats.prompt_tokens, stats.cached_tokens


def _greedy_request(conversation: Conversation, stage: str, tokens: int) -> Any:
    from reasonchat.engine.protocol import StageRequest
    from reasonchat.settings import GenerationSettings

    return StageRequest(
        conversation_id=conversation.id,
        stage=stage,  # type: ignore[arg-type]
        prompt=conversation.stage_prompt(0, stage),  # type: ignore[arg-type]
        settings=GenerationSettings(max_new_tokens=tokens, temperature=0),
        context_limit=10**9,
    )


def run_bench(
    backend: TransformersBackend,
    history_tokens: Sequence[int],
    *,
    decode_tokens: int = 128,
    stage_tokens: int = 32,
    steering_tokens: int = 0,
    fast_backend: TransformersBackend | None = None,
    fast_history_tokens: int = 8000,
    samples: int = 0,
    report: Report | None = None,
) -> BenchResult:
    """``fast_backend``: the fast path on ``backend``'s loaded model, compared with it last."""
    bench = Bench(backend, stage_tokens=stage_tokens, report=report)
    result = BenchResult(model=backend.description, machine=machine_info())
    for tokens in history_tokens:
        result.history.append(bench.history(tokens))
    if steering_tokens and history_tokens:
        result.steering.append(bench.steering(max(history_tokens), steering_tokens))
    if decode_tokens:
        result.decode = bench.decode(decode_tokens)
    if fast_backend is not None:
        tokens = decode_tokens or 128
        result.fast_path = FastPathBench(backend, fast_backend, report=report).run(tokens, fast_history_tokens)
    if samples > 1:
        result.sampling = bench_sampling(backend, samples, stage_tokens * 2, report=report)
    return result
