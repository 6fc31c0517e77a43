"""``reasonchat bench``: the engine against the model card's loop, side by side in one process.

The card's loop re-tokenizes and re-prefills the whole conversation for every stage. The engine keeps a
KV cache per conversation and prefills only what changed. Measured at each history length:
stage-2 time to first token (the reasoning was just generated) and next-turn time to first token
(a new question after a full turn); then, at the longest history, what the stage operations cost
(re-answering an edited reasoning, thinking more) with the cache and cold; then decode speed of bare
``model.generate`` against the engine's streaming path on the same prompt and token count.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reasonchat.bench.history import synthetic_conversation, synthetic_reasoning
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
class BenchResult:
    model: str
    machine: dict[str, Any]
    history: list[HistoryResult] = field(default_factory=list)
    steering: list[SteeringResult] = field(default_factory=list)
    decode: DecodeResult | None = None

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


def run_bench(
    backend: TransformersBackend,
    history_tokens: Sequence[int],
    *,
    decode_tokens: int = 128,
    stage_tokens: int = 32,
    steering_tokens: int = 0,
    report: Report | None = None,
) -> BenchResult:
    bench = Bench(backend, stage_tokens=stage_tokens, report=report)
    result = BenchResult(model=backend.description, machine=machine_info())
    for tokens in history_tokens:
        result.history.append(bench.history(tokens))
    if steering_tokens and history_tokens:
        result.steering.append(bench.steering(max(history_tokens), steering_tokens))
    if decode_tokens:
        result.decode = bench.decode(decode_tokens)
    return result
