"""The local backend: a transformers checkpoint, streamed from a generate thread, with KV-cache reuse.

Two decode paths share everything but the cache and the thread: the eager one (a ``DynamicCache``, a
thread per stage) and the fast one (``engine.static_decode``: a bucketed ``StaticCache`` owned here and
a compiled decode step, every call from the model's one long-lived generation thread). The fast path
is chosen at load time; if it cannot compile, or fails later, the eager path takes over with one notice.
"""

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
from reasonchat.engine import static_decode
from reasonchat.engine.detokenize import IncrementalDecoder
from reasonchat.engine.generation_thread import GenerationThread, run_in_new_thread
from reasonchat.engine.loading import LoadedModel, Progress, load_model
from reasonchat.engine.prefix_cache import PrefixCache
from reasonchat.engine.protocol import BatchSampler, GenerationError, StageRequest, cap_new_tokens

_END = object()
_POLL_S = 0.25
# Two backends on one model (the bench's eager and fast) must not make two compiled threads.
_THREAD_LOCK = threading.Lock()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class _QueueStreamer(BaseStreamer):
    """Hands each new token id to the consumer; never blocks the generating thread. ``produced`` keeps
    them for the generating side too (the fast path continues from them)."""

    def __init__(self, sink: queue.SimpleQueue[Any], produced: list[int] | None = None) -> None:
        self.sink = sink
        self.produced = produced
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate's first call passes the whole prompt
            self.prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            if self.produced is not None:
                self.produced.append(token_id)
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


class _FastPath:
    """What the fast path holds: its cache (one per backend, buffers kept per bucket), the compile
    settings, and what the warm-up measured."""

    def __init__(self, model: Any) -> None:
        self.cache = static_decode.BucketedCache(model.config)
        self.compile_config = static_decode.compile_config(model.device)
        self.warmup_s = 0.0
        self.graphs_after_warmup = 0


class TransformersBackend:
    counts_are_estimates = False  # the model's own tokenizer counts

    @property
    def batch_sampler(self) -> BatchSampler:
        """Several samples of one reasoning prompt in one batch, the prompt prefilled once."""
        return partial(sample_reasonings, self)

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        cache_reuse: bool = True,
        fast: bool = False,
        progress: Progress | None = None,
    ) -> None:
        """``fast``: try the compiled static-cache path (warmed up here, reporting through
        ``progress``); the eager path is used if it cannot be."""
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.prefix = PrefixCache(self._new_cache) if cache_reuse else None
        self._busy = threading.Lock()
        self._cancel: threading.Event | None = None
        self._progress = progress or (lambda message: None)
        self.fast: _FastPath | None = None
        # The one line saying why the fast path was asked for and is not used (None: not asked, or used).
        self.notice: str | None = None
        if fast:
            self._start_fast_path()

    # --- the fast path: set-up, warm-up, fallback --------------------------------------------------

    def _start_fast_path(self) -> None:
        reason = static_decode.unsupported_reason(self.model)
        if reason is not None:
            self._fall_back(f"fast decoding is not available for this model ({reason}); decoding eagerly")
            return
        where = "your GPU" if self.model.device.type == "cuda" else f"{self.model.device.type.upper()}"
        self._progress(f"compiling the decode step for {where} (a minute or more the first time)")
        try:
            if self.model.device.type == "cpu":
                static_decode.use_reduction_matvec(self.model)
            static_decode.use_packed_decode_attention(self.model)
            self.fast = _FastPath(self.model)
            graphs = static_decode.graphs_compiled()
            seconds = static_decode.warm_up(self.model, self._warm_up_run)
        except torch.cuda.OutOfMemoryError:
            self.fast = None
            torch.cuda.empty_cache()
            self._fall_back("out of GPU memory while compiling the decode step; decoding eagerly")
            return
        except Exception as err:  # any compiler failure: the eager path still works
            self.fast = None
            self._fall_back(f"compiling the decode step failed ({_first_line(err)}); decoding eagerly")
            return
        self.fast.warmup_s = seconds
        self.fast.graphs_after_warmup = static_decode.graphs_compiled() - graphs
        self._progress(f"decode step compiled in {seconds:.0f} s")

    def _warm_up_run(self, ids: list[int], new_tokens: int) -> None:
        def run() -> None:
            assert self.fast is not None
            config = self._fast_config(self._base_generation_config(new_tokens), new_tokens)
            config.do_sample, config.min_new_tokens, config.eos_token_id = False, new_tokens, None
            input_ids = torch.tensor([ids], dtype=torch.long, device=self.loaded.input_device)
            self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                generation_config=config,
                cache=self.fast.cache.empty(),
            )
            self.fast.cache.empty()

        self.compiled_thread().run(run)

    def _fall_back(self, message: str) -> None:
        """The eager path from now on, said once."""
        self.fast = None
        if self.prefix is not None:
            self.prefix.reset()  # it may hold the static cache
        if self.notice is None:
            self.notice = message
            self._progress(message)

    def compiled_thread(self) -> GenerationThread:
        with _THREAD_LOCK:
            if self.loaded.compiled_thread is None:
                self.loaded.compiled_thread = GenerationThread()
            return self.loaded.compiled_thread

    def _new_cache(self) -> Any:
        if self.fast is not None:
            return self.fast.cache.empty()
        return DynamicCache(config=self.model.config)

    def _fast_config(self, config: Any, max_new_tokens: int) -> Any:
        assert self.fast is not None
        config.max_new_tokens = max_new_tokens
        config.compile_config = self.fast.compile_config
        config.disable_compile = False
        return config

    # --- the Backend protocol ------------------------------------------------------------------------

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
        if self.loaded.compiled_thread is not None:
            self.loaded.compiled_thread.close()
            self.loaded.compiled_thread = None
        self.fast = None
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _base_generation_config(self, max_new_tokens: int) -> Any:
        config = copy.deepcopy(self.model.generation_config)
        config.max_new_tokens = max_new_tokens
        config.max_length = None
        config.eos_token_id = list(self.loaded.eos_ids)
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id or self.loaded.eos_ids[0]
        # The eager path is eager: a checkpoint asking for a static cache would otherwise compile on GPU
        # (and generate refuses a cache_implementation next to the cache we pass).
        config.disable_compile = True
        config.cache_implementation = None
        return config

    def generation_config(self, request: StageRequest, max_new_tokens: int) -> Any:
        """The checkpoint's generation config with our stop tokens and the request's overrides."""
        config = self._base_generation_config(max_new_tokens)
        settings = request.settings
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
        decoder = IncrementalDecoder(backend.tokenizer)
        first = last = None

        def job() -> None:
            self._generate(sink, abandoned)

        if backend.fast is not None:
            done = backend.compiled_thread().submit(job)
        else:
            done = run_in_new_thread(job)
        try:
            while True:
                item = self._next(sink, done)
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
            done.wait()
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
    def _next(sink: queue.SimpleQueue[Any], done: threading.Event) -> Any:
        # Never wait forever: a generate job that ended without posting is an error, not a hang.
        while True:
            try:
                return sink.get(timeout=_POLL_S)
            except queue.Empty:
                if done.is_set():
                    try:
                        return sink.get_nowait()
                    except queue.Empty:
                        return _Failure(RuntimeError("the generation thread ended without a result"))

    def _generate(self, sink: queue.SimpleQueue[Any], abandoned: threading.Event) -> None:
        backend, request = self.backend, self.request
        try:
            if request.settings.seed is not None:
                torch.manual_seed(request.settings.seed)
            produced: list[int] = []
            if backend.fast is None or not self._fast_or_fall_back(sink, abandoned, produced):
                remaining = self.max_new - len(produced)
                ended = bool(produced) and produced[-1] in backend.loaded.eos_ids
                stopped = request.cancel.is_set() or abandoned.is_set()
                if remaining > 0 and not ended and not stopped:
                    self._generate_eager(sink, abandoned, self.prompt_ids + produced, remaining)
        except BaseException as err:  # reaches the consumer; a thread must not die silently
            sink.put(_Failure(err))
        else:
            sink.put(_END)

    def _fast_or_fall_back(
        self, sink: queue.SimpleQueue[Any], abandoned: threading.Event, produced: list[int]
    ) -> bool:
        """True when the fast path generated the stage; False when it failed and the eager path must
        go on from ``produced`` (the tokens already streamed)."""
        backend = self.backend
        try:
            self._generate_fast(sink, abandoned, produced)
            return True
        except (torch.cuda.OutOfMemoryError, GenerationError):
            raise
        except Exception as err:
            # A compiled call that fails (a recompile the compiler cannot do, a graph error): the
            # static cache may be half-written, so it is dropped and the eager path stays.
            backend._fall_back(f"fast decoding failed ({_first_line(err)}); decoding eagerly")
            if backend.prefix is not None:
                eager_cache = DynamicCache(config=backend.model.config)
                self.cache = backend.prefix.adopt(self.request.conversation_id, eager_cache)
            else:
                self.cache = None
            return False

    def _call_generate(
        self,
        sink: queue.SimpleQueue[Any],
        abandoned: threading.Event,
        ids: list[int],
        config: Any,
        cache: Any,
        produced: list[int] | None = None,
    ) -> None:
        backend = self.backend
        input_ids = torch.tensor([ids], dtype=torch.long, device=backend.loaded.input_device)
        kwargs: dict[str, Any] = {}
        if cache is not None:
            kwargs["cache"] = cache
        backend.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            generation_config=config,
            streamer=_QueueStreamer(sink, produced),
            stopping_criteria=StoppingCriteriaList([_EventStop(self.request.cancel, abandoned)]),
            **kwargs,
        )

    def _generate_eager(
        self, sink: queue.SimpleQueue[Any], abandoned: threading.Event, ids: list[int], max_new: int
    ) -> None:
        config = self.backend.generation_config(self.request, max_new)
        self._call_generate(sink, abandoned, ids, config, self.cache)

    def _generate_fast(
        self, sink: queue.SimpleQueue[Any], abandoned: threading.Event, produced: list[int]
    ) -> None:
        """Generate in segments that fit the cache's bucket: when one fills it, the cache moves to the
        next bucket (one copy of what it holds) and generation continues from the tokens so far, the
        cache covering all of them but the last, so each continuation prefills one token."""
        backend, request = self.backend, self.request
        fast = backend.fast
        assert fast is not None
        cache = self.cache if self.cache is not None else fast.cache.empty()
        eos = set(backend.loaded.eos_ids)
        while True:
            ids = self.prompt_ids + produced
            cache.fit(len(ids) + 1)
            segment = min(self.max_new - len(produced), cache.size - len(ids))
            before = len(produced)
            config = backend._fast_config(backend.generation_config(request, segment), segment)
            self._call_generate(sink, abandoned, ids, config, cache, produced)
            got = len(produced) - before
            if (
                got < segment
                or len(produced) >= self.max_new
                or (produced and produced[-1] in eos)
                or request.cancel.is_set()
                or abandoned.is_set()
            ):
                return


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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def load_backend(
    model: str | os.PathLike[str],
    *,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    trust_remote_code: bool = False,
    cache_reuse: bool = True,
    compile: bool | None = None,
    adapter: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> TransformersBackend:
    """``compile``: the fast decode path (``engine.static_decode``); None: on CUDA only. ``adapter``:
    a LoRA adapter directory (``train --lora``) merged into the model before anything else sees it."""
    loaded = load_model(
        model,
        device=device,
        dtype=dtype,
        threads=threads,
        trust_remote_code=trust_remote_code,
        progress=progress,
    )
    if adapter is not None:
        from reasonchat.engine.adapters import apply_adapter

        loaded = apply_adapter(loaded, adapter)
    fast = compile if compile is not None else loaded.input_device.type == "cuda"
    return TransformersBackend(loaded, cache_reuse=cache_reuse, fast=fast, progress=progress)
