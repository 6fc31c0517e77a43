"""The local backend: a transformers checkpoint, streamed from a generate thread, with KV-cache reuse."""

from __future__ import annotations

import copy
import os
import queue
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from reasonchat.conversation import StageStats
from reasonchat.engine.batch_sampling import sample_reasonings
from reasonchat.engine.detokenize import IncrementalDecoder
from reasonchat.engine.loading import LoadedModel, Progress, load_model
from reasonchat.engine.prefix_cache import PrefixCache
from reasonchat.engine.protocol import BatchSampler, GenerationError, StageRequest, cap_new_tokens

_END = object()
_POLL_S = 0.25


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _QueueStreamer(BaseStreamer):
    """Hands each new token id to the consumer; never blocks the generating thread."""

    def __init__(self, sink: queue.SimpleQueue[Any]) -> None:
        self.sink = sink
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the whole prompt
            self.prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self.sink.put(token_id)

    def end(self) -> None:
        pass  # the thread posts _END itself, after generate has returned and the cache is complete


class _EventStop(StoppingCriteria):
    """Stops generation when any of the events is set (a cancel, or the consumer going away)."""

    def __init__(self, *events: threading.Event) -> None:
        self.events = events

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        stop = any(event.is_set() for event in self.events)
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


class TransformersBackend:
    counts_are_estimates = False  # the model's own tokenizer counts

    @property
    def batch_sampler(self) -> BatchSampler:
        """Several samples of one reasoning prompt in one batch, the prompt prefilled once."""
        return partial(sample_reasonings, self)

    def __init__(self, loaded: LoadedModel, *, cache_reuse: bool = True) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.prefix = (
            PrefixCache(lambda: DynamicCache(config=self.model.config)) if cache_reuse else None
        )
        self._busy = threading.Lock()
        self._cancel: threading.Event | None = None

    @property
    def description(self) -> str:
        return self.loaded.source

    @property
    def cache_reuse(self) -> bool:
        return self.prefix is not None

    def encode(self, text: str) -> list[int]:
        # Same call as the card's tokenizer([text]): special tokens in the text map to their ids.
        return list(self.tokenizer(text)["input_ids"])

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def stream(self, request: StageRequest) -> _TransformersStream:
        prompt_ids = self.encode(request.prompt)
        max_new = cap_new_tokens(
            request.stage, len(prompt_ids), request.context_limit, request.settings.budget(request.stage)
        )
        self._cancel = request.cancel
        return _TransformersStream(self, request, prompt_ids, max_new)

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def reset(self) -> None:
        if self.prefix is not None:
            self.prefix.reset()

    def close(self) -> None:
        self.reset()
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def generation_config(self, request: StageRequest, max_new_tokens: int) -> Any:
        """The checkpoint's generation config with our stop tokens and the request's overrides."""
        config = copy.deepcopy(self.model.generation_config)
        settings = request.settings
        config.max_new_tokens = max_new_tokens
        config.max_length = None
        config.eos_token_id = list(self.loaded.eos_ids)
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id or self.loaded.eos_ids[0]
        if settings.temperature is not None:
            config.do_sample = settings.temperature > 0
            if config.do_sample:
                config.temperature = settings.temperature
        for name in ("top_p", "top_k", "repetition_penalty"):
            value = getattr(settings, name)
            if value is not None:
                setattr(config, name, value)
        config.return_dict_in_generate = False
        return config


class _TransformersStream:
    def __init__(
        self, backend: TransformersBackend, request: StageRequest, prompt_ids: list[int], max_new: int
    ) -> None:
        self.backend = backend
        self.request = request
        self.prompt_ids = prompt_ids
        self.max_new = max_new
        self.stats = StageStats(prompt_tokens=len(prompt_ids))
        self.generated: list[int] = []
        if backend.prefix is not None:
            self.cache, self.stats.cached_tokens = backend.prefix.prepare(
                request.conversation_id, prompt_ids
            )
        else:
            self.cache = None

    def __iter__(self) -> Iterator[str]:
        backend = self.backend
        if not backend._busy.acquire(blocking=False):
            raise GenerationError("the model is already generating; wait for it or cancel it")
        try:
            yield from self._run()
        finally:
            backend._busy.release()

    def _run(self) -> Iterator[str]:
        backend, request, stats = self.backend, self.request, self.stats
        sink: queue.SimpleQueue[Any] = queue.SimpleQueue()
        abandoned = threading.Event()
        started = time.perf_counter()
        thread = threading.Thread(
            target=self._generate, args=(sink, abandoned), name="reasonchat-generate", daemon=True
        )
        decoder = IncrementalDecoder(backend.tokenizer)
        first = last = None
        thread.start()
        try:
            while True:
                item = self._next(sink, thread)
                if item is _END:
                    break
                if isinstance(item, _Failure):
                    backend.reset()
                    error = _as_generation_error(item.error)
                    stats.stop_reason, stats.error = "error", str(error)  # stats end with the stage
                    raise error from item.error
                last = time.perf_counter()
                if first is None:
                    first = last
                    stats.ttft_s = first - started
                self.generated.append(item)
                stats.new_tokens = len(self.generated)
                delta = decoder.push(item)
                if delta:
                    yield delta
            tail = decoder.flush()
            if tail:
                yield tail
        finally:
            abandoned.set()
            thread.join()
        stats.decode_s = (last - first) if first is not None and last is not None else 0.0
        eos = bool(self.generated) and self.generated[-1] in backend.loaded.eos_ids
        if eos:
            stats.stop_reason = "eos"
        elif request.cancel.is_set():
            stats.stop_reason = "cancelled"
        elif len(self.generated) >= self.max_new:
            stats.stop_reason = "budget"
        else:
            stats.stop_reason = "eos"
        if backend.prefix is not None:
            backend.prefix.record(self.prompt_ids + self.generated)

    @staticmethod
    def _next(sink: queue.SimpleQueue[Any], thread: threading.Thread) -> Any:
        # Never wait forever: a generate thread that died without posting is an error, not a hang.
        while True:
            try:
                return sink.get(timeout=_POLL_S)
            except queue.Empty:
                if not thread.is_alive():
                    try:
                        return sink.get_nowait()
                    except queue.Empty:
                        return _Failure(RuntimeError("the generation thread ended without a result"))

    def _generate(self, sink: queue.SimpleQueue[Any], abandoned: threading.Event) -> None:
        backend, request = self.backend, self.request
        try:
            if request.settings.seed is not None:
                torch.manual_seed(request.settings.seed)
            device = backend.loaded.input_device
            input_ids = torch.tensor([self.prompt_ids], dtype=torch.long, device=device)
            kwargs: dict[str, Any] = {}
            if self.cache is not None:
                kwargs["cache"] = self.cache
            backend.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=backend.generation_config(request, self.max_new),
                streamer=_QueueStreamer(sink),
                stopping_criteria=StoppingCriteriaList([_EventStop(request.cancel, abandoned)]),
                **kwargs,
            )
        except BaseException as err:  # reaches the consumer; a thread must not die silently
            sink.put(_Failure(err))
        else:
            sink.put(_END)


def _as_generation_error(error: BaseException) -> GenerationError:
    if isinstance(error, torch.cuda.OutOfMemoryError):
        torch.cuda.empty_cache()
        return GenerationError(
            "out of GPU memory while generating; the conversation is kept — lower the max new tokens, "
            "drop old turns, or use a smaller dtype"
        )
    if isinstance(error, GenerationError):
        return error
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return GenerationError(f"generation failed: {type(error).__name__}: {message}".rstrip(": "))


def load_backend(
    model: str | os.PathLike[str],
    *,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    trust_remote_code: bool = False,
    cache_reuse: bool = True,
    progress: Progress | None = None,
) -> TransformersBackend:
    loaded = load_model(
        model,
        device=device,
        dtype=dtype,
        threads=threads,
        trust_remote_code=trust_remote_code,
        progress=progress,
    )
    return TransformersBackend(loaded, cache_reuse=cache_reuse)
