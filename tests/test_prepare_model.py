"""``prepare-model`` on a tiny random Qwen2 and on the real Qwen2.5 tokenizer (151,936-row matrix)."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest

from reasonchat.errors import UserError
from reasonchat.template import END_OF_TEXT, IM_END, IM_START, REASONING_TOKEN
from tests.helpers.qwen import QWEN25_VOCAB_SIZE


def make_tiny_base(tokenizer_or_dir, out: Path, vocab_size: int | None = None, hidden: int = 16) -> Path:
    """A random tiny Qwen2 saved with the given tokenizer (a directory or a tokenizer object)."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = (
        AutoTokenizer.from_pretrained(tokenizer_or_dir)
        if isinstance(tokenizer_or_dir, (str, Path))
        else tokenizer_or_dir
    )
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    Qwen2ForCausalLM(config).save_pretrained(out)
    return out


def small_tokenizer(chatml: bool = True):
    """A 300-token byte-level BPE (Qwen2 rules), with or without the ChatML tokens."""
    from reasonchat.training.demo import tokenizer_corpus, train_tokenizer

    tokenizer = train_tokenizer(tokenizer_corpus(random.Random(0), dialogs=200), vocab_size=300)
    if chatml:
        return tokenizer
    # The same merges without <|im_start|>/<|im_end|>: rebuild from vocab and merges.
    from transformers import Qwen2Tokenizer

    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = {k: v for k, v in state["vocab"].items() if k not in (IM_START, IM_END)}
    vocab = {k: i for i, k in enumerate(sorted(vocab, key=vocab.get))}
    return Qwen2Tokenizer(vocab=vocab, merges=[tuple(m) for m in state["merges"]])


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def run_prepare(base: Path, out: Path, **kwargs):
    from reasonchat.training.prepare import prepare_model

    return prepare_model(base, out, log=lambda m: None, **kwargs)


_QWEN: dict[str, object] = {}


def prepared_qwen(qwen_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``(base dir, prepared dir, report)`` for a tiny model with Qwen2.5's tokenizer and 151,936 rows,
    made once per session (test_masks uses it too)."""
    if not _QWEN:
        root = tmp_path_factory.mktemp("qwen-prepared")
        base = make_tiny_base(qwen_tokenizer_dir, root / "base", vocab_size=QWEN25_VOCAB_SIZE, hidden=8)
        _QWEN.update(base=base, prepared=root / "prepared")
        _QWEN["report"] = run_prepare(base, root / "prepared")
    return _QWEN["base"], _QWEN["prepared"], _QWEN["report"]


@pytest.fixture
def qwen_prepared(qwen_tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return prepared_qwen(qwen_tokenizer_dir, tmp_path_factory)


def test_qwen25_gets_reasoning_151665_without_shrinking(qwen_prepared) -> None:
    from transformers import AutoTokenizer

    qwen_base, prepared, report = qwen_prepared
    assert report.added_tokens == [REASONING_TOKEN]
    # the fixture (like some exports) has the ChatML tokens special but not listed: now they are
    assert report.marked_special == [IM_START, IM_END]
    assert report.reasoning_id == 151665
    assert report.rows_before == report.rows_after == QWEN25_VOCAB_SIZE
    assert report.tokenizer_size == 151666
    assert report.eos_ids == [151645, 151643]
    assert report.mean_initialised == [151665]

    tokenizer = AutoTokenizer.from_pretrained(prepared)
    assert tokenizer(REASONING_TOKEN, add_special_tokens=False)["input_ids"] == [151665]
    assert tokenizer.decode([151665], skip_special_tokens=True) == ""
    for token in (IM_START, IM_END, REASONING_TOKEN):
        assert token in tokenizer.all_special_tokens
    assert tokenizer.convert_tokens_to_ids([IM_START, IM_END, END_OF_TEXT]) == [151644, 151645, 151643]
    assert tokenizer.decode(tokenizer("<|im_start|>user\nhi<|im_end|>")["input_ids"], skip_special_tokens=True) == "user\nhi"
    config = json.loads((prepared / "config.json").read_text())
    assert config["vocab_size"] == QWEN25_VOCAB_SIZE
    generation = json.loads((prepared / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643]

    before, after = weights(qwen_base), weights(prepared)
    embed = "model.embed_tokens.weight"
    assert after[embed].shape == before[embed].shape
    mean = before[embed][:151665].float().mean(dim=0)
    assert after[embed][151665].float().allclose(mean, atol=1e-6)
    # every other row is untouched
    assert after[embed][:151665].equal(before[embed][:151665])
    assert after[embed][151666:].equal(before[embed][151666:])


def test_qwen25_prepare_is_idempotent_and_engine_loads_it(qwen_prepared, tmp_path: Path) -> None:
    from reasonchat.engine.loading import load_model

    _, once_dir, first = qwen_prepared
    second = run_prepare(once_dir, tmp_path / "twice")
    assert second.added_tokens == [] and second.marked_special == [] and not second.changed
    assert second.reasoning_id == first.reasoning_id == 151665
    assert second.rows_after == QWEN25_VOCAB_SIZE
    once, twice = weights(once_dir), weights(tmp_path / "twice")
    assert once.keys() == twice.keys()
    assert all(once[k].equal(twice[k]) for k in once)
    assert json.loads((once_dir / "tokenizer.json").read_text())["added_tokens"] == json.loads(
        (tmp_path / "twice" / "tokenizer.json").read_text()
    )["added_tokens"]

    loaded = load_model(tmp_path / "twice", device="cpu")
    assert loaded.reasoning_id == 151665
    assert loaded.eos_ids[:2] == [151645, 151643]


def test_tiny_model_grows_by_one_mean_row(tmp_path: Path) -> None:
    tokenizer = small_tokenizer()
    base = make_tiny_base(tokenizer, tmp_path / "base")
    report = run_prepare(base, tmp_path / "out")
    assert report.added_tokens == [REASONING_TOKEN]
    assert report.reasoning_id == len(tokenizer) == report.rows_before
    assert report.rows_after == report.rows_before + 1
    assert report.eos_ids == [tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(END_OF_TEXT)]
    before, after = weights(base), weights(tmp_path / "out")
    embed = "model.embed_tokens.weight"
    assert after[embed][:-1].equal(before[embed])
    # mean_resizing: the new row is drawn around the mean of the old rows, close to it
    distance = (after[embed][-1] - before[embed].mean(dim=0)).norm()
    assert distance < before[embed].norm(dim=1).mean()
    again = run_prepare(tmp_path / "out", tmp_path / "again")
    assert not again.changed and again.rows_after == report.rows_after
    # what was added is recorded (train --lora trains those rows), and a second run keeps the record
    from reasonchat.training.prepare import added_tokens

    assert added_tokens(tmp_path / "out") == added_tokens(tmp_path / "again") == [REASONING_TOKEN]
    assert added_tokens(base) == []


def test_tokenizer_without_chatml_needs_add_chatml(tmp_path: Path) -> None:
    base = make_tiny_base(small_tokenizer(chatml=False), tmp_path / "base")
    with pytest.raises(UserError, match="--add-chatml"):
        run_prepare(base, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    report = run_prepare(base, tmp_path / "out", add_chatml=True, overwrite=True)
    assert report.added_tokens == [IM_START, IM_END, REASONING_TOKEN]
    from reasonchat.chat_template import CHAT_TEMPLATE
    from reasonchat.training.prepare import added_tokens

    assert added_tokens(tmp_path / "out") == [IM_START, IM_END, REASONING_TOKEN]
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE
    assert report.rows_after == report.rows_before + 3
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    for token in (IM_START, IM_END, REASONING_TOKEN):
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
        assert token in tokenizer.all_special_tokens


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        run_prepare(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        run_prepare(tmp_path / "empty", tmp_path / "out")
    base = make_tiny_base(small_tokenizer(), tmp_path / "base")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (base / name).rename(tmp_path / name)
    with pytest.raises(UserError, match="has no tokenizer"):
        run_prepare(base, tmp_path / "out")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).rename(base / name)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(UserError, match="--overwrite"):
        run_prepare(base, tmp_path / "taken")
    assert (tmp_path / "taken" / "file").exists()
    with pytest.raises(UserError, match="must differ"):
        run_prepare(base, base, overwrite=True)
    with pytest.raises(UserError, match="GGUF file"):
        run_prepare(base, tmp_path / "out", gguf_file="model.gguf")


def test_cli_prepare_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import training_commands

    base = make_tiny_base(small_tokenizer(), tmp_path / "base")
    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    args = parser.parse_args(["prepare-model", str(base), str(tmp_path / "out")])
    assert args.func(args) == 0
    assert "added <|reasoning|>" in capsys.readouterr().out
    args = parser.parse_args(["prepare-model", str(base), str(tmp_path / "out")])
    with pytest.raises(UserError, match="already exists"):
        args.func(args)


GGUF_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}  # fmt: skip


def write_tiny_gguf(path: Path) -> dict:
    """A 1-layer Qwen2 with the small tokenizer, written as GGUF (llama.cpp's names); its state dict."""
    gguf = pytest.importorskip("gguf")
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = small_tokenizer()
    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True)  # fmt: skip
    model = Qwen2ForCausalLM(config)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name("tiny")
    writer.add_context_length(512)
    writer.add_embedding_length(32)
    writer.add_block_count(1)
    writer.add_feed_forward_length(64)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    tokens = sorted(state["vocab"], key=state["vocab"].get)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in state["merges"]])
    writer.add_eos_token_id(state["vocab"][END_OF_TEXT])
    writer.add_pad_token_id(state["vocab"][END_OF_TEXT])
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue  # tied
        if name == "model.embed_tokens.weight":
            target = "token_embd.weight"
        elif name == "model.norm.weight":
            target = "output_norm.weight"
        else:
            _, _, layer, *rest = name.split(".")
            module, kind = ".".join(rest[:-1]), rest[-1]
            target = f"blk.{layer}.{GGUF_NAMES[module]}.{kind}"
        writer.add_tensor(target, tensor.detach().float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model.state_dict()


def test_gguf_checkpoint(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    (tmp_path / "gguf").mkdir()
    original = write_tiny_gguf(tmp_path / "gguf" / "tiny.gguf")
    report = run_prepare(tmp_path / "gguf", tmp_path / "out", gguf_file="tiny.gguf")
    assert report.added_tokens == [REASONING_TOKEN] and report.rows_after == report.rows_before + 1
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    saved = model.state_dict()
    for name, tensor in original.items():
        if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
            assert torch.allclose(saved[name][:-1], tensor)
        else:
            assert torch.allclose(saved[name], tensor), name
    assert model.generation_config.eos_token_id == report.eos_ids
