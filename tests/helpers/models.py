"""Tiny real transformers models for tests: random ones, and one trained for seconds to stop on <|im_end|>."""

from __future__ import annotations

import shutil
from pathlib import Path

from reasonchat.template import END_OF_TEXT, IM_END, REASONING_TOKEN, apply_chat_template


def add_reasoning_token(tokenizer_dir: Path, out: Path) -> object:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [REASONING_TOKEN]}, replace_extra_special_tokens=False
    )
    tokenizer.save_pretrained(out)
    return tokenizer


def tiny_qwen2(tokenizer, vocab_size: int | None = None, seed: int = 0, hidden: int = 32):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        pad_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
    )
    return Qwen2ForCausalLM(config)


def save_random_model(tokenizer_dir: Path, out: Path, vocab_size: int | None = None) -> Path:
    """A random tiny Qwen2 with the given tokenizer plus ``<|reasoning|>`` (never stops on its own)."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = add_reasoning_token(tokenizer_dir, out)
    model = tiny_qwen2(tokenizer, vocab_size)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids(IM_END),
        tokenizer.convert_tokens_to_ids(END_OF_TEXT),
    ]
    model.save_pretrained(out)
    return out


REASONING_TEXT = "Think: add the numbers."
ANSWER_TEXT = "The answer is 42."


def save_byte_tokenizer(out: Path) -> Path:
    """A byte-level Qwen2Tokenizer with no merges (256 byte tokens + the ChatML specials): tiny models
    trained on it are cheap, and it still decodes partial UTF-8 like the real one."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    from tests.helpers.qwen import _bytes_to_unicode

    vocab = {char: i for i, char in enumerate(_bytes_to_unicode().values())}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in (END_OF_TEXT, "<|im_start|>", IM_END)]
    )
    tokenizer.save_pretrained(out)
    return out


def save_stopping_model(tokenizer_dir: Path, out: Path, steps: int = 120) -> Path:
    """A tiny Qwen2 trained for a few seconds to answer any question with a fixed reasoning and answer
    and to end both stages on ``<|im_end|>`` (use a small tokenizer: ``save_byte_tokenizer``)."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = add_reasoning_token(tokenizer_dir, out)
    torch.manual_seed(0)
    model = tiny_qwen2(tokenizer, hidden=64)
    questions = ["hi", "What is 2+2?", "Tell me a story", "12 - 7", "你好", "again?"]
    texts = []
    for q in questions:
        history = [{"role": "system", "content": "You are a helpful assistant"}]
        for turn in range(3):
            history.append({"role": "user", "content": f"{q} {turn}" if turn else q})
            history.append({"role": REASONING_TOKEN, "content": REASONING_TEXT})
            history.append({"role": "assistant", "content": ANSWER_TEXT})
        texts.append(apply_chat_template(history, add_reasoning_generation_prompt=False))
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids(IM_END),
        tokenizer.convert_tokens_to_ids(END_OF_TEXT),
    ]
    model.generation_config.do_sample = False
    model.save_pretrained(out)
    return out


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
