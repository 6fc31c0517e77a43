"""A random-weight checkpoint with a real model's shapes, for speed measurements without the hub.

Decode speed depends on the shapes and the dtype, not on the weights' values: a model built from the
config of SmolLM2-135M or Qwen2.5-0.5B/1.5B reads the same bytes per token as the trained one. The
tokenizer is the demo model's (ChatML, ``<|reasoning|>``); ids it does not know decode to nothing, so
the text is empty noise while the token counts are real.

    python benchmarks/random_model.py qwen2.5-0.5b OUT [--dtype bfloat16] [--device cuda]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {
    # HuggingFaceTB/SmolLM2-135M-Instruct's config.json
    "smollm2-135m": dict(
        model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
        rope_theta=100000.0, max_position_embeddings=8192, rms_norm_eps=1e-5,
    ),
    # Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen2.5-1.5B-Instruct
    "qwen2.5-0.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
        rope_theta=1000000.0, max_position_embeddings=32768, rms_norm_eps=1e-6,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960,
        num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True,
        rope_theta=1000000.0, max_position_embeddings=32768, rms_norm_eps=1e-6,
    ),
}  # fmt: skip


def build(shape: str, out: Path, *, dtype: str = "float32", device: str = "cpu", seed: int = 0) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from reasonchat.demo_model import model_dir
    from reasonchat.token_ids import stop_ids

    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    source = Path(model_dir())
    for path in source.iterdir():
        if "token" in path.name or path.name == "special_tokens_map.json":
            shutil.copy(path, out / path.name)
    tokenizer = AutoTokenizer.from_pretrained(out)
    fields = dict(SHAPES[shape])
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    eos = stop_ids(tokenizer)
    config.eos_token_id, config.pad_token_id = eos, eos[0]
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = eos
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(build(args.shape, args.out, dtype=args.dtype, device=args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
