"""``train --lora``: adapters with peft, the protocol's rows trained through trainable-token indices,
``--merge``, resume, and ``engine.adapters.load_adapter``."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
from pathlib import Path

import pytest

from reasonchat.errors import UserError
from reasonchat.template import IM_END, IM_START, REASONING_TOKEN
from reasonchat.training.data import write_jsonl
from reasonchat.training.trainer import TrainConfig, train

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 whose tokenizer had no ChatML tokens: prepare-model --add-chatml added them."""
    from tests.test_prepare_model import make_tiny_base, run_prepare, small_tokenizer

    root = tmp_path_factory.mktemp("lora-base")
    tokenizer = small_tokenizer(chatml=False)
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    tokenizer.pad_token = "<|endoftext|>"
    base = make_tiny_base(tokenizer, root / "base", hidden=32)
    report = run_prepare(base, root / "prepared", add_chatml=True)
    assert set(report.added_tokens) == {IM_START, IM_END, REASONING_TOKEN}
    return root / "prepared"


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reasonchat.training.demo import TaskMix, random_dialog

    rng = random.Random(7)
    path = tmp_path_factory.mktemp("lora-data") / "train.jsonl"
    write_jsonl(path, (random_dialog(rng, TaskMix(turns=(1.0,))) for _ in range(48)))
    return path


def config(prepared: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    values: dict = {
        "model": str(prepared), "data": str(data), "out": str(out), "batch_size": 8, "max_steps": 24,
        "lr": 3e-2, "warmup_steps": 2, "seed": 0, "eval_every": 1000, "save_every": 1000, "threads": 1,
        "device": "cpu", "progress": False, "max_length": 512, "lora": 8,
    }  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def quiet(message: str) -> None:
    pass


def masked_loss(model_dir: Path, data: Path, adapter: Path | None = None) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonchat.training.data import JsonlDataset
    from reasonchat.training.trainer import Trainer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32")
    if adapter is not None:
        from reasonchat.engine.adapters import load_adapter

        model = load_adapter(model, adapter)
    import contextlib

    import torch

    return Trainer.evaluate(model, JsonlDataset(data, tokenizer, 512), 0, torch.device("cpu"),
                            contextlib.nullcontext(), batch_size=16)  # fmt: skip


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo task with a new answer style: something a trained model has to learn."""
    from reasonchat.training.demo import phrase, random_problem, reasoning_for

    rng = random.Random(3)
    examples = []
    for _ in range(48):
        problem = random_problem(rng)
        examples.append({"question": phrase(problem, rng), "reasoning": reasoning_for(problem),
                         "answer": f"The result is {problem.result}, my friend."})  # fmt: skip
    path = tmp_path_factory.mktemp("lora-demo-data") / "train.jsonl"
    write_jsonl(path, examples)
    return path


@pytest.fixture(scope="module")
def lora_run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LoRA on the (trained) demo model: a random tiny base cannot show a falling loss, its frozen
    random embeddings leave the adapters little to work with."""
    from reasonchat.demo_model import model_dir

    out = tmp_path_factory.mktemp("lora-run") / "run"
    result = train(config(model_dir(), demo_data, out, merge=True, max_steps=18, lr=1e-2), log=quiet)
    assert result.steps == 18 and not result.interrupted
    return out


def test_output_is_an_adapter_and_a_merged_model(lora_run: Path) -> None:
    from safetensors import safe_open

    assert (lora_run / "adapter_config.json").is_file() and (lora_run / "adapter_model.safetensors").is_file()
    assert not (lora_run / "model.safetensors").exists()  # not a second copy of the base
    with safe_open(lora_run / "adapter_model.safetensors", "pt") as f:
        names = list(f.keys())
    assert names and all("lora_" in n or "trainable_tokens" in n for n in names), names
    targets = json.loads((lora_run / "adapter_config.json").read_text())["target_modules"]
    kinds = {t.rsplit(".", 1)[-1] for t in targets}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "generation_config.json"):
        assert (lora_run / "merged" / name).is_file()
    assert "chat_template" in json.loads((lora_run / "tokenizer_config.json").read_text())


def test_lora_lowers_the_masked_loss(demo_data: Path, lora_run: Path) -> None:
    from reasonchat.demo_model import model_dir

    before = masked_loss(model_dir(), demo_data)
    after = masked_loss(lora_run / "merged", demo_data)
    assert after < 0.5 * before, (before, after)
    assert masked_loss(model_dir(), demo_data, adapter=lora_run) == pytest.approx(after, rel=1e-4)


@pytest.fixture(scope="module")
def chatml_run(prepared: Path, data_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lora-chatml") / "run"
    assert train(config(prepared, data_file, out, merge=True, max_steps=6), log=quiet).steps == 6
    return out


def test_only_the_added_tokens_rows_of_the_embedding_change(prepared: Path, chatml_run: Path) -> None:
    import torch
    from transformers import AutoTokenizer

    from tests.test_prepare_model import weights

    tokenizer = AutoTokenizer.from_pretrained(prepared)
    intended = set(tokenizer.convert_tokens_to_ids([IM_START, IM_END, REASONING_TOKEN]))
    before = weights(prepared)["model.embed_tokens.weight"]
    after = weights(chatml_run / "merged")["model.embed_tokens.weight"]
    changed = set(torch.nonzero((before != after).any(dim=1)).flatten().tolist())
    assert changed <= intended and tokenizer.convert_tokens_to_ids(REASONING_TOKEN) in changed, changed
    assert tokenizer.convert_tokens_to_ids(IM_END) in changed  # trained: it ends every trained turn


def test_merged_model_equals_base_plus_adapter(lora_run: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from reasonchat.demo_model import model_dir
    from reasonchat.engine.adapters import load_adapter

    ids = torch.tensor([[1, 5, 9, 40, 2, 300, 512, 7]])
    merged = AutoModelForCausalLM.from_pretrained(lora_run / "merged", dtype="float32").eval()
    base = AutoModelForCausalLM.from_pretrained(model_dir(), dtype="float32").eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        unmerged = load_adapter(base, lora_run, merge=False)  # base + adapter, computed apart
        expected = unmerged(ids).logits
        assert not torch.allclose(base_logits, expected, atol=1e-3)  # the adapter does something
        # the merged checkpoint is stored in the base's dtype (bf16 for the demo model)
        assert torch.allclose(merged(ids).logits, expected, atol=0.15)
        again = load_adapter(AutoModelForCausalLM.from_pretrained(model_dir(), dtype="float32"), lora_run)
        assert torch.allclose(again(ids).logits, expected, atol=1e-4)


def test_ctrl_c_and_resume_match_an_uninterrupted_lora_run(prepared: Path, data_file: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    straight = train(config(prepared, data_file, tmp_path / "straight", max_steps=6), log=quiet)

    def interrupt(step: int, loss: float) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "stopped"
    assert train(config(prepared, data_file, out, max_steps=6), log=quiet, on_step=interrupt).interrupted
    with pytest.raises(UserError, match="trained with --lora 8; resume it with the same"):
        train(config(prepared, data_file, out, max_steps=6, lora=None, resume=True), log=quiet)
    resumed = train(config(prepared, data_file, out, max_steps=6, resume=True), log=quiet)
    assert resumed.resumed_from == 2 and resumed.losses == pytest.approx(straight.losses, rel=1e-4)
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_cli_lora_flags(prepared: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import training_commands

    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    argv = ["train", "--model", str(prepared), "--data", str(data_file), "--out", str(tmp_path / "o"),
            "--max-steps", "2", "--batch-size", "4", "--threads", "1", "--no-progress", "--device", "cpu",
            "--lora", "4", "--lora-alpha", "16", "--lora-targets", "q_proj", "v_proj",
            "--gradient-checkpointing"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    adapter = json.loads((tmp_path / "o" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 16
    assert {t.rsplit(".", 1)[-1] for t in adapter["target_modules"]} == {"q_proj", "v_proj"}
    with pytest.raises(UserError, match="need --lora R"):
        train(config(prepared, data_file, tmp_path / "x", lora=None, merge=True), log=quiet)
    with pytest.raises(UserError, match="--lora: "):
        train(config(prepared, data_file, tmp_path / "y", lora_targets=["no_such_proj"]), log=quiet)


def test_load_adapter_errors_are_one_line(prepared: Path, chatml_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from reasonchat.engine.adapters import load_adapter
    from tests.test_prepare_model import make_tiny_base, small_tokenizer

    model = AutoModelForCausalLM.from_pretrained(prepared)
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (pickled / "adapter_model.bin").write_bytes(b"\x80\x04")
    cases = [
        (tmp_path / "missing", "adapter not found"),
        (tmp_path / "file", "is a file; pass the adapter directory"),
        (tmp_path / "empty", "is not an adapter directory"),
        (prepared, r"is not an adapter directory \(no adapter_config.json in it\) \(it is a full model"),
        (pickled, "a pickle that could run code"),
    ]
    for path, message in cases:
        with pytest.raises(UserError, match=message) as info:
            load_adapter(model, path)
        assert "\n" not in str(info.value)
    other = make_tiny_base(small_tokenizer(), tmp_path / "other", hidden=16)  # another width
    with pytest.raises(UserError, match="does not fit this model") as info:
        load_adapter(AutoModelForCausalLM.from_pretrained(other), chatml_run)
    assert "\n" not in str(info.value)


def test_apply_adapter_to_an_engine_model(lora_run: Path) -> None:
    """What ``chat``/``ask --model BASE --adapter DIR`` do: the engine's loaded model, adapter merged in."""
    import torch

    from reasonchat.demo_model import model_dir
    from reasonchat.engine.adapters import apply_adapter
    from reasonchat.engine.loading import load_model

    loaded = load_model(model_dir(), device="cpu")
    ids = torch.tensor([[1, 5, 9, 40, 2, 300, 512, 7]])
    with torch.no_grad():
        before = loaded.model(ids).logits
        adapted = apply_adapter(loaded, lora_run)
        assert adapted is loaded and type(loaded.model).__name__ == "Qwen2ForCausalLM"  # merged, plain
        assert not torch.allclose(loaded.model(ids).logits, before, atol=1e-3)


def test_ask_with_an_adapter_flag_loads_it_and_a_bad_one_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import main

    (tmp_path / "not-an-adapter").mkdir()
    code = main(["ask", "--no-save", "--threads", "1", "--adapter", str(tmp_path / "not-an-adapter"), "hi"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "adapter" in err[0], err
