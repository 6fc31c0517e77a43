"""N reasonings for one prompt in one batch ("think N times", self-consistency) on a transformers model.

The prompt is prefilled once, at batch 1, and its cache repeated N times (``batch_repeat_interleave``);
the N samples then decode together, one forward per step for all of them, instead of N prefills and
N sequential decodes. Each row streams through its own incremental decoder to ``on_text(row, delta)``,
so every sample can be shown as it grows. Rows stop at their own end token; generation stops when all
have, at the budget, or at a cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from reasonchat.conversation import StageStats
from reasonchat.engine.detokenize import IncrementalDecoder
from reasonchat.engine.protocol import GenerationError, StageRequest, cap_new_tokens

OnText = Callable[[int, str], None]


class _RowsStreamer(BaseStreamer):
    """Each step's tokens, one per row, decoded row by row; a row is done at its first end token."""

    def __init__(self, tokenizer: Any, rows: int, eos: set[int], on_text: OnText, started: float) -> None:
        self.decoders = [IncrementalDecoder(tokenizer) for _ in range(rows)]
        self.ids: list[list[int]] = [[] for _ in range(rows)]
        self.done = [False] * rows
        self.stats = [StageStats() for _ in range(rows)]
        self.texts = [""] * rows
        self.eos = eos
        self.on_text = on_text
        self.started = started

    def put(self, value: torch.Tensor) -> None:
        if value.dim() > 1:  # the prompt (the one uncached token), not a generated step
            return
        now = time.perf_counter() - self.started
        for row, token in enumerate(value.tolist()):
            if self.done[row]:
                continue  # generate pads a finished row
            stats = self.stats[row]
            if stats.ttft_s is None:
                stats.ttft_s = now
            if token in self.eos:
                self.done[row] = True
                stats.stop_reason = "eos"
                continue
            self.ids[row].append(token)
            stats.new_tokens += 1
            delta = self.decoders[row].push(token)
            if delta:
                self.texts[row] += delta
                stats.chunks.append((round(now, 4), len(self.texts[row])))
                self.on_text(row, delta)
            stats.decode_s = now - stats.ttft_s

    def end(self) -> None:
        for row, decoder in enumerate(self.decoders):
            if held := decoder.flush():
                self.texts[row] += held
                self.on_text(row, held)


class _Cancelled(StoppingCriteria):
    def __init__(self, request: StageRequest) -> None:
        self.request = request

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.request.cancel.is_set(), dtype=torch.bool, device=input_ids.device)


def sample_reasonings(backend: Any, request: StageRequest, count: int, on_text: OnText | None = None) -> list[tuple[str, StageStats]]:
    """``count`` sampled continuations of ``request.prompt`` (a reasoning prompt), as (text, stats).

    ``backend`` is a ``TransformersBackend`` (its model, tokenizer, stop ids and generation settings).
    Raises ``ContextOverflow`` when the prompt leaves no room, ``GenerationError`` when generation fails.
    """
    ids = backend.encode(request.prompt)
    max_new = cap_new_tokens(request.stage, len(ids), request.context_limit, request.settings.budget(request.stage))
    config = backend.generation_config(request, max_new)
    if not config.do_sample:
        raise GenerationError("sampling in a batch needs a temperature above 0")
    eos = set(backend.loaded.eos_ids)
    device = backend.loaded.input_device
    started = time.perf_counter()
    streamer = _RowsStreamer(backend.tokenizer, count, eos, on_text or (lambda row, delta: None), started)
    try:
        with torch.inference_mode():
            if request.settings.seed is not None:
                torch.manual_seed(request.settings.seed)
            prompt = torch.tensor([ids], dtype=torch.long, device=device)
            cache = DynamicCache(config=backend.model.config)
            if len(ids) > 1:  # once, at batch 1: all but the last token, which generate feeds itself
                backend.model(input_ids=prompt[:, :-1], cache=cache, use_cache=True)
            cache.batch_repeat_interleave(count)
            batch = prompt.repeat(count, 1)
            backend.model.generate(
                input_ids=batch,
                attention_mask=torch.ones_like(batch),
                cache=cache,
                generation_config=config,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_Cancelled(request)]),
            )
    except torch.OutOfMemoryError as err:
        raise GenerationError(f"out of memory sampling {count} reasonings at once: {str(err).splitlines()[0]}") from None
    out = []
    for row, stats in enumerate(streamer.stats):
        stats.prompt_tokens = len(ids)
        if stats.stop_reason is None:
            stats.stop_reason = "cancelled" if request.cancel.is_set() else "budget"
        out.append((streamer.texts[row], stats))
    return out
