"""``reasonchat bench --backend openai``: what a served model costs through reasonchat, over HTTP.

The local bench compares the card's loop with the engine's KV-cache reuse inside one process; a server
keeps its own cache, so here the comparison is the server's prefix cache hit or missed. At each history
length: stage-2 time to first token right after stage 1 (warm: vLLM's automatic prefix caching and
SGLang's radix cache can serve the whole history), the same stage-2 prompt behind a never-seen system
prompt (cold: the full prefill), and the next turn's first token; then decode tokens/s.
Times include the HTTP round trip, as a user sees them.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reasonchat.bench.history import synthetic_conversation
from reasonchat.bench.timing import Report, timed_stage
from reasonchat.conversation import Conversation
from reasonchat.engine.openai_backend import OpenAIBackend

_MIN_DECODE_TOKENS = 8


@dataclass
class HttpHistoryResult:
    history_tokens: int
    stage2_prompt_tokens: int
    stage2_cached_tokens: int  # as the server reports it (0 when it does not)
    cold_stage2_ttft_s: float
    warm_stage2_ttft_s: float
    next_turn_ttft_s: float

    @property
    def cache_speedup(self) -> float:
        return self.cold_stage2_ttft_s / self.warm_stage2_ttft_s


@dataclass
class HttpBenchResult:
    model: str
    token_counter: str
    history: list[HttpHistoryResult] = field(default_factory=list)
    decode_tokens_per_s: float | None = None
    decode_note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "token_counter": self.token_counter,
            "history": [asdict(h) | {"cache_speedup": h.cache_speedup} for h in self.history],
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "decode_note": self.decode_note,
        }

    def lines(self) -> list[str]:
        """The result as plain text, one line per measurement."""
        about = "~" if self.token_counter == "estimate" else ""
        out = [f"model: {self.model} (token counts: {self.token_counter})"]
        for h in self.history:
            out.append(
                f"history {about}{h.history_tokens:,} tokens: stage-2 first token "
                f"{h.warm_stage2_ttft_s:.3f}s after stage 1, {h.cold_stage2_ttft_s:.3f}s uncached "
                f"({h.cache_speedup:.1f}×, server cached {h.stage2_cached_tokens:,} of "
                f"{h.stage2_prompt_tokens:,}); next turn {h.next_turn_ttft_s:.3f}s"
            )
        if self.decode_tokens_per_s is not None:
            out.append(f"decode: {self.decode_tokens_per_s:.1f} tokens/s (median of 3, client-side)")
        elif self.decode_note:
            out.append(f"decode: {self.decode_note}")
        return out


def measure_history(
    backend: OpenAIBackend, history_tokens: int, stage_tokens: int, report: Report
) -> HttpHistoryResult:
    report(f"history {history_tokens:,} tokens: building the conversation")
    conversation = synthetic_conversation(backend, history_tokens, id_prefix="http-bench")
    turn = conversation.turns[-1]
    report(f"history {history_tokens:,}: stage 1 (fills the server's prefix cache)")
    _, turn.reasoning, _ = timed_stage(backend, conversation, "reasoning", stage_tokens)
    report(f"history {history_tokens:,}: stage 2")
    warm, turn.answer, stats = timed_stage(backend, conversation, "answer", stage_tokens)
    report(f"history {history_tokens:,}: stage 2 behind an unseen system prompt")
    unseen = f"[{uuid.uuid4().hex}] {conversation.system_prompt or ''}"
    cold_conversation = Conversation(system_prompt=unseen, turns=list(conversation.turns))
    cold, _, _ = timed_stage(backend, cold_conversation, "answer", 1)
    conversation.add_turn("And what should we do next?")
    report(f"history {history_tokens:,}: next turn")
    next_turn, _, _ = timed_stage(backend, conversation, "reasoning", 1)
    return HttpHistoryResult(
        history_tokens=history_tokens,
        stage2_prompt_tokens=stats.prompt_tokens,
        stage2_cached_tokens=stats.cached_tokens,
        cold_stage2_ttft_s=cold,
        warm_stage2_ttft_s=warm,
        next_turn_ttft_s=next_turn,
    )


def measure_decode(
    backend: OpenAIBackend, tokens: int, report: Report, rounds: int = 3
) -> tuple[float | None, str | None]:
    """Median tokens/s after the first token, or (None, why not)."""
    conversation = Conversation(id="http-bench-decode")
    conversation.add_turn("Write a long story about a lighthouse keeper and a storm.")
    rates = []
    for number in range(1, rounds + 1):
        report(f"decode round {number}/{rounds}")
        _, _, stats = timed_stage(backend, conversation, "reasoning", tokens)
        if stats.new_tokens < _MIN_DECODE_TOKENS or stats.tokens_per_s is None:
            stopped = f"the model stopped after {stats.new_tokens} tokens"
            return None, f"{stopped}; decode speed needs a longer output"
        rates.append(stats.tokens_per_s)
    return statistics.median(rates), None


def run_http_bench(
    backend: OpenAIBackend,
    history_tokens: Sequence[int],
    *,
    decode_tokens: int = 128,
    stage_tokens: int = 32,
    report: Report | None = None,
) -> HttpBenchResult:
    say = report or (lambda message: None)
    result = HttpBenchResult(model=backend.description, token_counter=backend.token_counter)
    for tokens in history_tokens:
        result.history.append(measure_history(backend, tokens, stage_tokens, say))
    if decode_tokens:
        result.decode_tokens_per_s, result.decode_note = measure_decode(backend, decode_tokens, say)
    return result
