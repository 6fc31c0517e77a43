"""Think N times: N sampled reasonings of one prompt in one batch against N runs one after another.

The sequential side is what the app would do without batching: N stages of the same prompt, the
prefix cache serving the prompt after the first, so only decoding differs. Both sides sample the same
number of new tokens (no stop token is honoured: the budget is the length), side by side in one run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from reasonchat.bench.timing import Report
from reasonchat.conversation import Conversation
from reasonchat.engine.batch_sampling import sample_reasonings
from reasonchat.engine.protocol import StageRequest
from reasonchat.settings import GenerationSettings


@dataclass(frozen=True)
class SamplingResult:
    samples: int
    tokens: int  # new tokens per sample
    sequential_s: float
    batch_s: float

    @property
    def speedup(self) -> float:
        return self.sequential_s / self.batch_s if self.batch_s else 0.0

    @property
    def sequential_tokens_per_s(self) -> float:
        return self.samples * self.tokens / self.sequential_s if self.sequential_s else 0.0

    @property
    def batch_tokens_per_s(self) -> float:
        return self.samples * self.tokens / self.batch_s if self.batch_s else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "tokens_per_sample": self.tokens,
            "sequential_s": round(self.sequential_s, 4),
            "batch_s": round(self.batch_s, 4),
            "sequential_tokens_per_s": round(self.sequential_tokens_per_s, 1),
            "batch_tokens_per_s": round(self.batch_tokens_per_s, 1),
            "speedup": round(self.speedup, 2),
        }


def bench_sampling(
    backend: Any, samples: int = 4, tokens: int = 64, rounds: int = 2, report: Report | None = None
) -> SamplingResult:
    """Time ``samples`` reasonings of ``tokens`` tokens each, one after another, then in one batch."""
    say = report or (lambda line: None)
    conversation = Conversation()
    conversation.add_turn("What is 482 + 1937? Show each column.")
    prompt = conversation.stage_prompt(0, "reasoning")

    def request() -> StageRequest:
        return StageRequest(
            conversation.id, "reasoning", prompt,
            GenerationSettings(max_new_tokens=tokens, temperature=0.8, seed=1, top_k=0, top_p=1.0),
            context_limit=10**9,
        )  # fmt: skip

    eos = list(backend.loaded.eos_ids)
    backend.loaded.eos_ids = []  # both sides generate the full budget, so they do the same work
    def one_by_one() -> None:
        for _ in range(samples):
            for _delta in backend.stream(request()):
                pass

    def batched() -> None:
        sample_reasonings(backend, request(), samples)

    try:
        timed: dict[str, float] = {}
        # Interleaved, best of ``rounds`` after a warm-up of each: a noisy machine slows both alike.
        for round_ in range(rounds + 1):
            for name, run in (("one after another", one_by_one), ("in one batch", batched)):
                say(f"sampling {samples} × {tokens} tokens {name} ({'warm-up' if round_ == 0 else f'round {round_}'})")
                start = time.perf_counter()
                run()
                if round_:
                    timed[name] = min(timed.get(name, float("inf")), time.perf_counter() - start)
    finally:
        backend.loaded.eos_ids = eos
    return SamplingResult(samples, tokens, timed["one after another"], timed["in one batch"])
