"""The fast decode path: an app-owned static KV cache in buckets and a compiled decode step.

``generate`` compiles the model's forward for decoding (prefill stays eager, so prompt lengths never
recompile) when it is handed a compileable cache; since transformers 5.15 it allocates a fresh static
cache per call when asked for ``cache_implementation="static"``, which would drop the prefix between
stages, so the backend owns the cache and passes it as ``cache=``.

The cache is sized in buckets (1k, 2k, 4k, … up to what the stage needs): the compiled step's
attention spans every slot (one graph for any length), so a short chat must not pay for 32k of them.
Prefill, eager, attends over the filled slots only (``use_packed_decode_attention``). One set of
buffers per bucket is kept for the backend's life: CUDA graphs record the buffers' addresses, and
fresh buffers per conversation would re-record them every time (and past a limit, silently stop using
graphs). The step is compiled with
dynamic shapes, so a new bucket re-uses the compiled code instead of compiling again.

Imports torch: only the transformers backend imports this module.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Any

import torch
from transformers import StaticCache
from transformers.cache_utils import StaticLayer
from transformers.generation.configuration_utils import CompileConfig

FIRST_BUCKET = 1024


def bucket_for(tokens: int) -> int:
    """The smallest bucket holding ``tokens``: 1,024 doubled as often as needed."""
    size = FIRST_BUCKET
    while size < tokens:
        size *= 2
    return size


def unsupported_reason(model: Any) -> str | None:
    """Why the fast path cannot run ``model`` (then the eager path does), or None."""
    if not getattr(model, "_can_compile_fullgraph", False):
        return f"{type(model).__name__} is not marked compileable by transformers"
    config = model.config
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    devices = set(getattr(model, "hf_device_map", {}).values())
    if len(devices) > 1:
        return "the model is split across devices"
    # Sliding-window and linear-attention layers keep other state than a plain static layer; growing a
    # bucket copies plain layers only.
    probe = StaticCache(config=config, max_cache_len=8)
    if any(type(layer) is not StaticLayer for layer in probe.layers):
        return "the model has sliding-window or linear-attention layers"
    return None


def compile_config(device: torch.device) -> CompileConfig:
    """Dynamic shapes: one compile serves every bucket. CUDA graphs where there is CUDA."""
    cuda = device.type == "cuda"
    config = CompileConfig(fullgraph=True, dynamic=True, mode="reduce-overhead" if cuda else "default")
    # generate compiles on CUDA-like devices only unless told otherwise.
    config._compile_all_devices = True
    return config


def use_reduction_matvec(model: Any) -> None:
    """Inside compiled code, a one-row ``Linear`` becomes a multiply-and-sum that inductor fuses into
    one bandwidth-bound kernel. On CPU that reads the weights ~1.6× faster than the BLAS call it
    replaces (measured on 2 x86 cores, fp32, 1 thread). Eager calls (prefill, the eager path) are
    untouched; GPUs keep cuBLAS."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and "forward" not in vars(module):
            module.forward = _matvec_forward(module, module.forward)


def _matvec_forward(module: torch.nn.Linear, eager: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    def forward(x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() and x.numel() == x.shape[-1]:
            out = (x.unsqueeze(-2) * module.weight).sum(-1)
            return out if module.bias is None else out + module.bias
        return eager(x)

    return forward


PACKED_ATTENTION = "reasonchat_sdpa"


def use_packed_decode_attention(model: Any) -> bool:
    """Two changes to SDPA attention, for models on plain SDPA (False when left alone):

    - Inside compiled code, one query token attends on the key/value heads directly (its query heads
      packed per group) instead of through ``repeat_kv``, which transformers uses under compile and
      which copies the whole cache ``groups`` times per layer per step (3x for SmolLM2, 7x for
      Qwen2.5-0.5B). Eager transformers does the same packing outside compile.
    - Outside it (prefill), attention spans the filled slots only: a static cache hands attention its
      whole bucket, so a 5-token suffix prefilled at 8k tokens into a 16k bucket would attend over
      (and ``repeat_kv``-copy) twice the keys the eager path's cache holds."""
    if model.config._attn_implementation != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_ATTENTION, _packed_sdpa)
    AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
    model.set_attn_implementation(PACKED_ATTENTION)
    return True


def _packed_sdpa(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    plain = kwargs.get("position_bias") is None and kwargs.get("softcap") is None and kwargs.get("s_aux") is None
    compiling = torch.compiler.is_compiling()
    if not (compiling and query.shape[2] == 1 and groups > 1 and plain):
        if not compiling and plain and attention_mask is not None:
            used = _filled_slots(attention_mask)
            if used < key.shape[2]:
                key, value, attention_mask = key[:, :, :used], value[:, :, :used], attention_mask[..., :used]
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
            **kwargs,
        )  # fmt: skip
    batch, heads, _, dim = query.shape
    # (batch, kv heads, group, dim): the group takes the place of the query length, the mask
    # (batch, 1, 1, slots) broadcasts over it.
    packed = query.reshape(batch, heads // groups, groups, dim)
    out = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=scaling
    )
    return out.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


# Every layer of one forward gets the same mask: its filled length is found once (a device sync).
# A weak reference, as a prefill's mask can be hundreds of MB.
_last_mask: tuple[weakref.ref[torch.Tensor] | None, int] = (None, 0)


def _filled_slots(mask: torch.Tensor) -> int:
    """Key slots any query may see: up to the newest query's position, past which a static cache's
    slots are empty. A mask that is not boolean is taken whole."""
    global _last_mask
    seen, used = _last_mask
    if seen is not None and seen() is mask:
        return used
    if mask.dtype != torch.bool or mask.dim() != 4:
        return mask.shape[-1]
    visible = mask[..., -1, :].reshape(-1, mask.shape[-1]).any(0).nonzero()
    used = int(visible.max()) + 1 if visible.numel() else mask.shape[-1]
    _last_mask = (weakref.ref(mask), used)
    return used


def graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process: the warm-up's one, plus one per recompile."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


class BucketedCache(StaticCache):
    """A ``StaticCache`` that can move to a bigger bucket, keeping what it holds.

    ``generate`` sees one cache object for a whole conversation; moving to a bucket swaps the layers
    underneath it for that bucket's (kept) buffers and copies the held tokens across.
    """

    def __init__(self, config: Any, size: int | None = None) -> None:
        size = size or FIRST_BUCKET
        super().__init__(config=config, max_cache_len=size)
        self._config = config
        self._pool: dict[int, list[Any]] = {size: list(self.layers)}
        self.size = size

    def length(self) -> int:
        return int(self.get_seq_length())

    def empty(self) -> BucketedCache:
        """Held tokens forgotten, back to the first bucket (a new conversation)."""
        self._switch(FIRST_BUCKET, keep=0)
        return self

    def fit(self, tokens: int) -> None:
        """Make room for ``tokens`` tokens, moving to a bigger bucket if needed (never to a smaller one)."""
        if tokens > self.size:
            self._switch(bucket_for(tokens), keep=self.length())

    def _switch(self, size: int, keep: int) -> None:
        old = self.layers
        if size not in self._pool:
            self._pool[size] = list(StaticCache(config=self._config, max_cache_len=size).layers)
        new = self._pool[size]
        if new is not old:
            for source, target in zip(old, new, strict=True):
                if keep and not target.is_initialized:
                    # Zero-length views carry shape, dtype and device without copying anything.
                    target.lazy_initialization(source.keys[:, :, :0], source.values[:, :, :0])
                if keep:
                    target.keys[:, :, :keep].copy_(source.keys[:, :, :keep])
                    target.values[:, :, :keep].copy_(source.values[:, :, :keep])
        for layer in new:
            if layer.is_initialized:
                layer.cumulative_length.fill_(keep)
        self.layers = new
        self.size = size


def warm_up(model: Any, run: Callable[[list[int], int], None], *, prompt_tokens: int = 8) -> float:
    """Seconds to compile the decode step: one short greedy generation through ``run(ids, n)`` (the
    backend's own fast path, in its generation thread)."""
    vocab = model.get_input_embeddings().weight.shape[0]
    ids = [(7 * i + 3) % vocab for i in range(prompt_tokens)]
    started = time.perf_counter()
    run(ids, 4)  # the first decode call compiles; the next ones check it runs from the compiled code
    return time.perf_counter() - started
