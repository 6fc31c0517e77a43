"""``train --processes 2`` (torchrun + accelerate, gloo on CPU) against one process with twice the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasonchat.training.trainer import TrainConfig, train
from tests.test_training import data_file, prepared  # noqa: F401  (module fixtures)

pytest.importorskip("accelerate")

STEPS = 4


def two_process_run(prepared: Path, data: Path, eval_data: Path, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    argv = [sys.executable, "-m", "reasonchat", "train", "--processes", "2", "--model", str(prepared),
            "--data", str(data), "--out", str(out), "--eval-data", str(eval_data), "--eval-every", "2",
            "--max-steps", str(STEPS), "--batch-size", "4", "--lr", "1e-2", "--warmup-steps", "2",
            "--max-length", "512", "--threads", "1", "--device", "cpu", "--no-progress"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def runs(prepared: Path, data_file: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    root = tmp_path_factory.mktemp("ddp")
    # 58 eval examples: 15 batches of 4, so the two processes evaluate 8 and 7 of them
    eval_data = root / "eval.jsonl"
    eval_data.write_text("".join(data_file.read_text().splitlines(keepends=True)[:58]))
    done = two_process_run(prepared, data_file, eval_data, root / "two")
    assert done.returncode == 0, done.stderr[-3000:]
    one = train(TrainConfig(model=str(prepared), data=str(data_file), out=str(root / "one"),
                            eval_data=str(eval_data), eval_every=2, max_steps=STEPS, batch_size=8, lr=1e-2,
                            warmup_steps=2, max_length=512, threads=1, device="cpu", progress=False),
                log=lambda m: None)  # fmt: skip
    return root, done, one


def test_two_processes_of_b_equal_one_process_of_2b(runs) -> None:
    import torch
    from safetensors.torch import load_file

    root, done, one = runs
    state = json.loads((root / "two" / "checkpoint" / "trainer_state.json").read_text())
    assert state["processes"] == 2 and state["global_batch"] == 8
    # The loss is the mean over the trained tokens of the global batch, so the curves are the same.
    assert state["losses"] == pytest.approx(one.losses, rel=1e-5)
    assert [s for s, _ in state["eval_losses"]] == [s for s, _ in one.eval_losses] == [2, 4]
    assert [x for _, x in state["eval_losses"]] == pytest.approx([x for _, x in one.eval_losses], rel=1e-5)
    a, b = load_file(root / "one" / "model.safetensors"), load_file(root / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


def test_the_main_process_alone_reports_and_saves(runs) -> None:
    root, done, one = runs
    assert done.stdout.count(f"trained {STEPS} steps") == 1, done.stdout
    assert done.stderr.count("step 2: train loss") == 1 and done.stderr.count("step 4: train loss") == 1
    assert not any(p.name.endswith((".tmp", ".old")) for p in (root / "two").iterdir())


def test_resume_with_another_process_count_says_what_it_does(runs, tmp_path: Path) -> None:
    import shutil

    root, _, _ = runs
    state = json.loads((root / "two" / "checkpoint" / "trainer_state.json").read_text())
    for batch, expected in [(8, "the global batch stays 8 examples, so the run continues exactly"),
                            (4, "the global batch changes from 8 to 4 examples")]:  # fmt: skip
        out = tmp_path / f"b{batch}"
        shutil.copytree(root / "two", out)
        messages: list[str] = []
        config = {**state["config"], "out": str(out), "resume": True, "batch_size": batch,
                  "max_steps": STEPS + 1, "eval_data": None}  # fmt: skip
        result = train(TrainConfig(**config), log=messages.append)
        assert result.resumed_from == STEPS and result.steps == STEPS + 1
        text = "\n".join(messages)
        assert "resuming a run of 2 process(es)" in text and expected in text, text
        if batch == 4:
            assert "for an exact continuation pass --batch-size 8" in text


def test_processes_relaunches_the_same_command_line() -> None:
    import argparse

    from reasonchat.cli import training_commands

    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    argv = ["train", "--model", "m", "--data", "d.jsonl", "--out", "o", "--processes", "2", "--lora", "8",
            "--lora-targets", "q_proj", "v_proj", "--merge", "--lr", "0.003", "--grad-accum", "2",
            "--gradient-checkpointing", "--resume", "--eval-batches", "3", "--device", "cpu"]  # fmt: skip
    args = parser.parse_args(argv)
    again = parser.parse_args(training_commands._relaunch_argv(args))
    assert again.processes is None
    assert {k: v for k, v in vars(again).items() if k not in ("processes", "func", "train_parser")} == {
        k: v for k, v in vars(args).items() if k not in ("processes", "func", "train_parser")
    }
