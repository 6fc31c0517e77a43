"""The demo task, the build pipeline (a few steps), and the shipped demo model answering through the engine."""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reasonchat.demo_model import WEIGHTS_DIR, is_available, model_dir
from reasonchat.errors import UserError
from reasonchat.training.demo import (
    OFF_TASK_ANSWER,
    OFF_TASK_REASONING,
    DemoSettings,
    Problem,
    comparison,
    eval_dialogs,
    is_held_out,
    phrase,
    random_dialog,
    random_problem,
    reasoning_for,
)

# -- the task ------------------------------------------------------------------------------------------


def test_reasoning_examples() -> None:
    assert reasoning_for(Problem(48, "+", 84)) == (
        "48 + 84\nones: 8+4=12 -> 2\ntens: 4+8=12, +1=13 -> 32\ncarry: 1 -> 132\nresult: 132"
    )
    assert reasoning_for(Problem(52, "-", 17)) == (
        "52 - 17\ncompare: 2 vs 2 digits, 5-1=4, so 52 >= 17\nones: 2-7=-5, +10=5 -> 5\n"
        "tens: 5-1=4, -1=3 -> 35\nresult: 35"
    )
    assert reasoning_for(Problem(7, "-", 12)) == (
        "7 - 12\ncompare: 1 vs 2 digits, so 7 < 12, so -(12 - 7)\nones: 2-7=-5, +10=5 -> 5\n"
        "tens: 1-0=1, -1=0 -> 05\nresult: -5"
    )
    assert reasoning_for(Problem(1000, "-", 1)).split("\n")[2:4] == [
        "ones: 0-1=-1, +10=9 -> 9",
        "tens: 0-0=0, -1=-1, +10=9 -> 99",
    ]
    assert reasoning_for(Problem(0, "-", 0)).endswith("ones: 0-0=0 -> 0\nresult: 0")
    assert Problem(7, "-", 12).answer == "7 - 12 = -5"


COLUMN = re.compile(
    r"^(?:ones|tens|hundreds|thousands): (\d)([+-])(\d)=(-?\d+)(?:, ([+-])1=(-?\d+))?(?:, \+10=(\d+))?"
    r" -> (\d+)$"
)


def test_every_column_line_is_right() -> None:
    """Re-check each worked line of 2,000 random problems from the text alone."""
    rng = random.Random(3)
    for _ in range(2000):
        problem = random_problem(rng)
        lines = reasoning_for(problem).split("\n")
        assert lines[0] == problem.statement and lines[-1] == f"result: {problem.result}"
        previous, carried = "", False
        for text in lines[1:-1]:
            match = COLUMN.match(text)
            if match is None:
                assert text.startswith(("carry: 1 -> ", "compare: ")), text
                continue
            x, op, y, first, sign, second, borrowed, partial = match.groups()
            value = int(x) + int(y) if op == "+" else int(x) - int(y)
            assert int(first) == value, text
            assert (sign is not None) == carried, text  # the carried/borrowed 1 of the last column
            if sign is not None:
                value += 1 if sign == "+" else -1
                assert sign == op and int(second) == value, text
            if borrowed is not None:
                assert value < 0 and int(borrowed) == value + 10, text
                value += 10
            else:
                assert 0 <= value, text
            carried = value >= 10 if op == "+" else borrowed is not None
            assert partial == str(value % 10) + previous, text
            previous = partial
        if lines[-2].startswith("carry"):
            previous = "1" + previous
        assert int(previous) == abs(problem.result)


def test_comparisons() -> None:
    assert comparison(5321, 5319) == "compare: 4 vs 4 digits, 5-5=0, 3-3=0, 2-1=1, so 5321 >= 5319"
    assert comparison(49, 49) == "compare: 2 vs 2 digits, 4-4=0, 9-9=0, so 49 >= 49"
    assert comparison(3278, 5768) == "compare: 4 vs 4 digits, 3-5=-2, so 3278 < 5768, so -(5768 - 3278)"
    assert comparison(7, 12) == "compare: 1 vs 2 digits, so 7 < 12, so -(12 - 7)"
    rng = random.Random(4)
    for _ in range(2000):
        a, b = rng.randint(0, 9999), rng.randint(0, 9999)
        assert comparison(a, b).endswith(f"so {a} >= {b}" if a >= b else f"so -({b} - {a})")


def test_held_out_problems_are_never_trained() -> None:
    rng = random.Random(5)
    assert not any(is_held_out(random_problem(rng)) for _ in range(3000))
    assert all(is_held_out(random_problem(rng, held_out=True)) for _ in range(300))
    for dialog in eval_dialogs(50):
        for question, answer in dialog:
            a, op, b = answer.split(" = ")[0].split(" ")
            assert is_held_out(Problem(int(a), op, int(b)))


def test_the_benchmark_asks_as_a_new_user_does() -> None:
    """About 40 % subtractions, varied phrasings, a third without the final punctuation (issue 16)."""
    questions = [(q, a) for dialog in eval_dialogs(500) for q, a in dialog]
    subtractions = sum(" - " in a for _, a in questions) / len(questions)
    bare = sum(not q.strip().endswith(("?", ".")) for q, _ in questions) / len(questions)
    assert 0.36 < subtractions < 0.44 and bare > 0.4, (subtractions, bare)
    words = " ".join(q.lower() for q, _ in questions)
    for phrasing in ("plus", "minus", "add ", "subtract ", " from ", "+", "-"):
        assert phrasing in words


def test_phrasings_name_the_operands_in_answer_order() -> None:
    rng = random.Random(9)
    for _ in range(500):
        problem = random_problem(rng)
        text = phrase(problem, rng)
        numbers = [int(n) for n in re.findall(r"\d+", text)]
        assert sorted(numbers) == sorted([problem.a, problem.b]), text
        if "from" in text:
            assert numbers == [problem.b, problem.a]


def test_dialogs_have_off_task_turns_and_several_questions() -> None:
    rng = random.Random(11)
    dialogs = [random_dialog(rng)["messages"] for _ in range(400)]
    users = [sum(m["role"] == "user" for m in d) for d in dialogs]
    assert set(users) == {1, 2, 3, 4}
    off = [m for d in dialogs for m in d if m["content"] == OFF_TASK_REASONING]
    assert 0.05 < len(off) / sum(users) < 0.2


# -- the build pipeline --------------------------------------------------------------------------------


def test_build_pipeline_runs(tmp_path: Path) -> None:
    """The full build (tokenizer, prepare-model, JSONL, train) for a few steps of a toy-sized model."""
    from transformers import AutoTokenizer

    from reasonchat.training.demo import build_demo_model

    settings = DemoSettings(steps=3, batch_size=4, hidden_size=32, intermediate_size=64, layers=1,
                            heads=2, kv_heads=1, eval_dialogs=4, eval_every=3)  # fmt: skip
    report = build_demo_model(tmp_path / "demo", settings, progress=False, log=lambda m: None)
    out = tmp_path / "demo"
    expected = ["build_info.json", "config.json", "generation_config.json", "model.safetensors"]
    expected += ["tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in out.iterdir()) == expected
    info = json.loads((out / "build_info.json").read_text())
    assert info["settings"]["steps"] == 3 and report.parameters == info["parameters"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.convert_tokens_to_ids("<|reasoning|>") == 512
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"  # runs in fp32
    from safetensors import safe_open

    with safe_open(out / "model.safetensors", "pt") as weights:  # stored in bf16
        names = weights.keys()
        assert {str(weights.get_slice(k).get_dtype()) for k in names} == {"BF16"}
    with pytest.raises(UserError, match="already exists"):
        build_demo_model(out, settings, progress=False, log=lambda m: None)


# -- the shipped model -----------------------------------------------------------------------------------


def test_shipped_files_are_small_and_located_without_torch() -> None:
    assert is_available()
    assert model_dir() == WEIGHTS_DIR
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir())
    assert total < 5_000_000
    code = "import sys, reasonchat.demo_model as d; d.model_dir(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_shipped_tokenizer_loads_as_built() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    assert type(tokenizer).__name__ == "Qwen2Tokenizer"
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|reasoning|>"]) == [
        0, 1, 2, 512
    ]  # fmt: skip
    for token in ("<|im_start|>", "<|im_end|>", "<|reasoning|>"):
        assert token in tokenizer.all_special_tokens
    # Qwen2's split rules: one token per digit
    assert tokenizer.convert_ids_to_tokens(tokenizer("1234")["input_ids"]) == ["1", "2", "3", "4"]
    text = "你好 ¿Qué? <|im_start|>user\nWhat is 12 + 7?<|im_end|>"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    # it carries the card's chat template, as every checkpoint train writes does
    from reasonchat.chat_template import CHAT_TEMPLATE

    assert tokenizer.chat_template == CHAT_TEMPLATE
    history = [{"role": "user", "content": "What is 12 + 7?"}]
    assert tokenizer.apply_chat_template(history, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|><|reasoning|>\n"
    )


@pytest.fixture(scope="module")
def backend():
    from reasonchat.engine.transformers_backend import load_backend

    loaded = load_backend(model_dir(), device="cpu", threads=1)
    yield loaded
    loaded.close()


def test_shipped_model_answers_three_questions_in_one_dialog(backend) -> None:
    from reasonchat.conversation import Conversation
    from reasonchat.engine import GenerationSettings, TurnRunner

    runner = TurnRunner(backend, GenerationSettings(max_new_tokens=200))
    conversation = Conversation(model=str(model_dir()))
    for question, expected in [
        ("What is 12 + 7?", "12 + 7 = 19"),
        ("subtract 5 from 9", "9 - 5 = 4"),
        ("what's 1203 minus 4518", "1203 - 4518 = -3315"),
        ("Add 4821 and 5377.", "4821 + 5377 = 10198"),
    ]:
        conversation.add_turn(question)
        turn = runner.run(conversation)
        # Exact arithmetic is the benchmark's job (the model is not perfect); here every turn of the
        # dialog must parse the question, show its work, answer in the protocol's form and stop.
        operands = expected.split(" = ")[0]
        assert turn.answer.startswith(operands + " = "), (question, turn.answer)
        assert turn.reasoning_stats.stop_reason == "eos"
        assert turn.answer_stats.stop_reason == "eos"
        assert turn.reasoning.splitlines()[-1] == "result: " + turn.answer.split(" = ")[1]
    assert conversation.turns[0].answer == "12 + 7 = 19"


def test_shipped_model_answers_a_greeting_politely(backend) -> None:
    from reasonchat.conversation import Conversation
    from reasonchat.engine import GenerationSettings, TurnRunner

    conversation = Conversation()
    conversation.add_turn("Hello there")
    turn = TurnRunner(backend, GenerationSettings(max_new_tokens=200)).run(conversation)
    assert turn.reasoning == OFF_TASK_REASONING
    assert turn.answer == OFF_TASK_ANSWER


def test_benchmark_code_on_a_few_dialogs(backend) -> None:
    from reasonchat.training.demo import evaluate_demo_model

    report = evaluate_demo_model(model_dir(), dialogs=4, turns=3, off_task=2, backend=backend)
    assert list(report.rows) == ["turn 1", "turn 2", "turn 3", "off-task"]
    assert all(row.turns == 4 for name, row in report.rows.items() if name != "off-task")
    # The quality bar itself is the benchmark (`reasonchat demo-model eval`, docs/demo-model.md);
    # here: the benchmark code runs the real two-stage inference and every stage stops cleanly.
    assert "| turn 3 | 4 |" in report.markdown()
    assert all(row.clean == row.turns for row in report.rows.values()), report.markdown()


def test_cli_demo_model_path(capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import training_commands

    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    args = parser.parse_args(["demo-model", "path"])
    assert args.func(args) == 0
    assert capsys.readouterr().out.strip() == str(WEIGHTS_DIR)


def test_missing_weights_say_how_to_rebuild(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import reasonchat.demo_model as demo

    monkeypatch.setattr(demo, "WEIGHTS_DIR", tmp_path / "gone")
    assert not demo.is_available()
    with pytest.raises(UserError, match="demo-model build"):
        demo.model_dir()
    assert demo.model_dir(check=False) == tmp_path / "gone"


def test_cli_demo_model_eval(capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import training_commands

    parser = argparse.ArgumentParser()
    training_commands.register(parser.add_subparsers())
    args = parser.parse_args(["demo-model", "eval", "--dialogs", "2", "--turns", "2", "--off-task", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "turn 2" in out and "PASS" in out


def test_ask_without_model_uses_the_demo_model(capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import main

    assert main(["ask", "--no-save", "--json", "--threads", "1", "What is 12 + 7?"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["answer"] == "12 + 7 = 19"
    assert data["reasoning"].endswith("result: 19")
