"""The JSONL dataset, the training loop (20 steps where the loss falls), checkpoints, Ctrl+C, --resume."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
from pathlib import Path

import pytest

from reasonchat.errors import UserError
from reasonchat.training.data import JsonlDataset, batches, collate, write_jsonl
from reasonchat.training.demo import Problem, random_dialog, reasoning_for
from reasonchat.training.trainer import TrainConfig, lr_at, train


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 (hidden 32) with a small BPE tokenizer, through prepare-model."""
    from tests.test_prepare_model import make_tiny_base, run_prepare, small_tokenizer

    root = tmp_path_factory.mktemp("train-base")
    base = make_tiny_base(small_tokenizer(), root / "base", hidden=32)
    run_prepare(base, root / "prepared")
    return root / "prepared"


@pytest.fixture(scope="module")
def tokenizer(prepared: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(prepared)


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reasonchat.training.demo import TaskMix

    rng = random.Random(7)
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    write_jsonl(path, (random_dialog(rng, TaskMix(turns=(1.0,))) for _ in range(64)))
    return path


def config(prepared: Path, data: Path, out: Path, **overrides) -> TrainConfig:
    values: dict = {
        "model": str(prepared), "data": str(data), "out": str(out), "batch_size": 8,
        "max_steps": 20, "lr": 1e-2, "warmup_steps": 3, "seed": 0, "eval_every": 10,
        "save_every": 1000, "threads": 1, "device": "cpu", "progress": False, "max_length": 512,
    }  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def quiet(message: str) -> None:
    pass


def test_twenty_steps_and_the_loss_falls(prepared: Path, data_file: Path, tmp_path: Path) -> None:
    from reasonchat.engine.loading import load_model

    out = tmp_path / "run"
    result = train(config(prepared, data_file, out, eval_data=str(data_file)), log=quiet)
    assert result.steps == 20 and not result.interrupted
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < 0.8 * first, result.losses
    assert [step for step, _ in result.eval_losses] == [10, 20]
    assert result.eval_losses[1][1] < result.eval_losses[0][1]
    for name in ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json"):
        assert (out / name).is_file()
    assert (out / "checkpoint" / "optimizer.safetensors").is_file()
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 20
    loaded = load_model(out, device="cpu")  # the engine takes the result as it is
    assert loaded.eos_ids[0] == loaded.tokenizer.convert_tokens_to_ids("<|im_end|>")
    from reasonchat.chat_template import CHAT_TEMPLATE

    for directory in (out, out / "checkpoint"):  # every checkpoint carries the chat template
        tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
        assert tokenizer_config["chat_template"] == CHAT_TEMPLATE
        assert json.loads((directory / "reasonchat.json").read_text()) == {"added_tokens": ["<|reasoning|>"]}


def test_gradient_checkpointing_gives_the_same_run(prepared: Path, data_file: Path, tmp_path: Path) -> None:
    plain = train(config(prepared, data_file, tmp_path / "plain", max_steps=3), log=quiet)
    checkpointed = train(config(prepared, data_file, tmp_path / "gc", max_steps=3, gradient_checkpointing=True),
                         log=quiet)  # fmt: skip
    assert checkpointed.losses == pytest.approx(plain.losses, rel=1e-5)


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(
    prepared: Path, data_file: Path, tmp_path: Path
) -> None:
    import torch
    from safetensors.torch import load_file

    straight = train(config(prepared, data_file, tmp_path / "straight", max_steps=8), log=quiet)

    def interrupt(step: int, loss: float) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl+C during step 3

    out = tmp_path / "stopped"
    stopped = train(config(prepared, data_file, out, max_steps=8), log=quiet, on_step=interrupt)
    assert stopped.interrupted and stopped.steps == 3
    assert not (out / "model.safetensors").exists()  # no final model, only the checkpoint
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 3

    with pytest.raises(UserError, match="already exists"):
        train(config(prepared, data_file, out, max_steps=8), log=quiet)
    resumed = train(config(prepared, data_file, out, max_steps=8, resume=True), log=quiet)
    assert resumed.resumed_from == 3 and resumed.steps == 8
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-4)
    a = load_file(tmp_path / "straight" / "model.safetensors")
    b = load_file(out / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resume_without_checkpoint(prepared: Path, data_file: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to resume"):
        train(config(prepared, data_file, tmp_path / "none", resume=True), log=quiet)


def test_unprepared_model_is_refused(data_file: Path, tmp_path: Path) -> None:
    from tests.test_prepare_model import make_tiny_base, small_tokenizer

    base = make_tiny_base(small_tokenizer(), tmp_path / "base")
    with pytest.raises(UserError, match="prepare-model"):
        train(config(base, data_file, tmp_path / "out"), log=quiet)


def test_lr_schedule_warmup_then_cosine() -> None:
    c = TrainConfig(model="", data="", out="", lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, c, 100) == pytest.approx(0.1)
    assert lr_at(9, c, 100) == pytest.approx(1.0)
    assert lr_at(10, c, 100) == pytest.approx(1.0)
    assert lr_at(55, c, 100) == pytest.approx(0.55)
    assert lr_at(100, c, 100) == pytest.approx(0.1)
    values = [lr_at(s, c, 100) for s in range(10, 101)]
    assert values == sorted(values, reverse=True)


# -- data --------------------------------------------------------------------------------------------


def test_dataset_masks_and_labels(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    problem = Problem(12, "+", 7)
    write_jsonl(path, [{"question": "12+7", "reasoning": reasoning_for(problem), "answer": problem.answer}])
    (example,) = list(JsonlDataset(path, tokenizer))
    batch = collate([example, example], pad_id=0)
    labels = batch["labels"][0].tolist()
    trained = [t for t, label in zip(example.input_ids, labels, strict=True) if label != -100]
    text = tokenizer.decode(trained, skip_special_tokens=False)
    assert text == reasoning_for(problem) + "<|im_end|>" + problem.answer + "<|im_end|>"
    assert all(label == -100 for label, m in zip(labels, example.mask, strict=True) if not m)


def test_padding_is_never_trained(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [{"question": "q", "reasoning": "r", "answer": "a"},
                       {"question": "a much longer question", "reasoning": "more words here", "answer": "ok"}])  # fmt: skip
    short, long = list(JsonlDataset(path, tokenizer))
    batch = collate([short, long], pad_id=0)
    assert batch["attention_mask"][0].sum() == len(short)
    assert (batch["labels"][0, len(short) :] == -100).all()


def test_long_examples_are_dropped_and_counted(tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [{"question": "q", "reasoning": "r", "answer": "a"},
                       {"question": "q " * 200, "reasoning": "r", "answer": "a"},
                       {"question": "q", "reasoning": "r", "answer": "b"}])  # fmt: skip
    dataset = JsonlDataset(path, tokenizer, max_length=64)
    kept = list(dataset)
    assert [e.line for e in kept] == [1, 3]
    assert dataset.stats.dropped == 1 and dataset.stats.kept == 2


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "reasoning": "r", "answer": "a"}', "{not json"], r"d\.jsonl:2: not valid JSON"),
        (['{"question": "q", "answer": "a"}'], r"d\.jsonl:1: missing field 'reasoning'"),
        (["", '{"messages": [{"role": "robot", "content": "x"}]}'], r"d\.jsonl:2: .*unknown role"),
        (["[1, 2]"], r"d\.jsonl:1: an example must be a JSON object"),
        (["", "  "], "has no examples"),
    ],
)
def test_malformed_lines_name_the_line(tokenizer, tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=message):
        JsonlDataset(path, tokenizer).validate()


def test_missing_data_file(tokenizer, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="data file not found"):
        JsonlDataset(tmp_path / "nope.jsonl", tokenizer)


def test_batches_are_reproducible_and_grouped(tokenizer, data_file: Path) -> None:
    dataset = JsonlDataset(data_file, tokenizer)
    one = [[e.line for e in b] for b in batches(dataset, 8, seed=1, epoch=0, group_by_length=4)]
    two = [[e.line for e in b] for b in batches(dataset, 8, seed=1, epoch=0, group_by_length=4)]
    other = [[e.line for e in b] for b in batches(dataset, 8, seed=1, epoch=1, group_by_length=4)]
    assert one == two and one != other
    assert sorted(x for b in one for x in b) == list(range(1, 65))


def test_cli_train(prepared: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import training_commands

    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    argv = ["train", "--model", str(prepared), "--data", str(data_file), "--out", str(tmp_path / "o"),
            "--max-steps", "2", "--batch-size", "4", "--threads", "1", "--no-progress", "--device", "cpu"]  # fmt: skip
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert (tmp_path / "o" / "model.safetensors").is_file()
