"""Hostile and broken checkpoints, and bad numbers, against every command that takes them.

A checkpoint's own Python (``auto_map``) never runs and is never asked about unless
``--trust-remote-code`` is given; a checkpoint that cannot be loaded (truncated or corrupt safetensors,
a config.json that is not JSON, no weights, weights of the wrong shape or missing) is one line naming
the file, exit 2; every numeric option refuses nan, infinities and values out of range, naming the
option, before any model is loaded.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reasonchat import config
from reasonchat.cli import main
from reasonchat.errors import UserError
from reasonchat.settings import GenerationSettings
from tests.helpers.engine_fixtures import (  # noqa: F401 (fixtures)
    byte_random_model_dir,
    byte_tokenizer_dir,
)

HOSTILE_MODEL_TYPE = "reasonchat_hostile"


def hostile_code(marker: Path) -> str:
    """A module that, once imported, has run: it leaves ``marker`` (and then works as Qwen2)."""
    return (
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('the checkpoint ran its code')\n"
        "from transformers import Qwen2Config, Qwen2ForCausalLM\n\n\n"
        "class HostileConfig(Qwen2Config):\n"
        f"    model_type = {HOSTILE_MODEL_TYPE!r}\n\n\n"
        "class HostileModel(Qwen2ForCausalLM):\n"
        "    config_class = HostileConfig\n"
    )


@pytest.fixture
def hostile(tmp_path: Path, byte_random_model_dir: Path) -> tuple[Path, Path]:
    """``(checkpoint, marker)``: a working tiny checkpoint whose config.json maps its classes to
    ``hostile.py``, a model type transformers does not know (so only that code could load it)."""
    checkpoint = shutil.copytree(byte_random_model_dir, tmp_path / "hostile")
    marker = tmp_path / "MARKER"
    data = json.loads((checkpoint / "config.json").read_text())
    data["model_type"] = HOSTILE_MODEL_TYPE
    data["auto_map"] = {"AutoConfig": "hostile.HostileConfig", "AutoModelForCausalLM": "hostile.HostileModel"}
    (checkpoint / "config.json").write_text(json.dumps(data))
    (checkpoint / "hostile.py").write_text(hostile_code(marker))
    return checkpoint, marker


def command_lines(model: Path, tmp_path: Path) -> dict[str, list[str]]:
    """Every command that loads a checkpoint, loading ``model`` (nothing else in it can fail first)."""
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"question": "1+1", "reasoning": "r", "answer": "2"}) + "\n")
    return {
        "ask": ["ask", "--model", str(model), "hi"],
        "bench": ["bench", "--model", str(model), "--history-tokens", "0", "--decode-tokens", "0"],
        "train": ["train", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "out")],
        "prepare-model": ["prepare-model", str(model), str(tmp_path / "prepared")],
        "demo-model eval": ["demo-model", "eval", "--model", str(model), "--dialogs", "1", "--turns", "1",
                            "--off-task", "0"],  # fmt: skip
    }


COMMANDS = ("ask", "bench", "train", "prepare-model", "demo-model eval")


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's one error line (transformers may log above it, but never a traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("reasonchat: error: "), err
    return last


def chat_load_error(model: Path, *flags: str) -> str:
    """What the app's model-loading dialog would say for ``reasonchat chat --model MODEL``."""
    from reasonchat.cli.app_commands import build_app
    from reasonchat.tui.worker import describe
    from tests.tui.helpers import chat_args

    app = build_app(chat_args("--model", str(model), *flags))
    try:
        with pytest.raises(UserError) as info:
            app.options.load_backend(lambda message: None)
    finally:
        app.options.store.close()
    text = describe(info.value)
    assert "\n" not in text
    return text


# --- remote code ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_a_checkpoints_code_never_runs_and_nobody_is_asked(
    command: str, hostile: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    checkpoint, marker = hostile
    # A "y" waits on stdin: transformers' prompt ("Do you wish to run the custom code? [y/N]") would
    # read it and run hostile.py.
    stdin = io.StringIO("y\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(command_lines(checkpoint, tmp_path)[command]) == 2
    line = one_error_line(capsys)
    assert str(checkpoint) in line and "--trust-remote-code" in line
    assert not marker.exists()
    assert stdin.read() == "y\n", "something read stdin: a prompt"


def test_chat_refuses_a_checkpoints_code(hostile: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint, marker = hostile
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    text = chat_load_error(checkpoint)
    assert str(checkpoint) in text and "--trust-remote-code" in text
    assert not marker.exists()


def _run_cli(args: list[str], tmp_path: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    # Where transformers copies a trusted checkpoint's code to import it: not the user's cache.
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "hf-modules"))
    return subprocess.run(
        [sys.executable, "-m", "reasonchat", *args],
        input=stdin, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_train_with_y_on_a_real_stdin_runs_nothing_and_the_flag_lets_the_code_run(
    hostile: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, marker = hostile
    args = command_lines(checkpoint, tmp_path)["train"]
    refused = _run_cli(args, tmp_path, stdin="y\n")
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and "[y/N]" not in refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("reasonchat: error: ")
    assert not marker.exists()
    # The control: this checkpoint's code does run when asked to (so the refusal above is real).
    allowed = _run_cli([*args, "--trust-remote-code"], tmp_path, stdin="")
    assert marker.exists(), allowed.stderr
    assert "Traceback" not in allowed.stderr


@pytest.mark.parametrize("command", (*COMMANDS, "chat"))
@pytest.mark.parametrize("trusted", [False, True])
def test_the_flag_reaches_from_pretrained(
    command: str, trusted: bool, byte_random_model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Every from_pretrained of ours says trust_remote_code (True or False, never None, which prompts)."""
    import transformers

    seen: list[tuple[str, object]] = []

    def spy(cls: type, name: str) -> None:
        original = getattr(cls, "from_pretrained").__func__

        def from_pretrained(klass: type, *args: object, **kwargs: object) -> object:
            seen.append((name, kwargs.get("trust_remote_code", "absent")))
            if name == "model":
                raise OSError("stop here")  # what was passed is all this test needs
            return original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(from_pretrained))

    spy(transformers.AutoTokenizer, "tokenizer")
    spy(transformers.AutoModelForCausalLM, "model")
    flags = ["--trust-remote-code"] if trusted else []
    if command == "chat":
        assert "stop here" in chat_load_error(byte_random_model_dir, *flags)
    else:
        assert main([*command_lines(byte_random_model_dir, tmp_path)[command], *flags]) == 2
        assert "stop here" in one_error_line(capsys)
    assert {name for name, _ in seen} == {"tokenizer", "model"}
    assert all(value is trusted for _, value in seen), seen


# --- checkpoints that cannot be loaded -----------------------------------------------------------


def _truncate(directory: Path) -> str:
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return "model.safetensors"


def _corrupt_header(directory: Path) -> str:
    weights = directory / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes((10**12).to_bytes(8, "little") + data[8:])  # a header "a terabyte long"
    return "model.safetensors"


def _garbage(directory: Path) -> str:
    (directory / "model.safetensors").write_bytes(b"\x00" * 64 + b"not safetensors" * 10)
    return "model.safetensors"


def _config_not_json(directory: Path) -> str:
    (directory / "config.json").write_text('{"model_type": "qwen2",')
    return "config.json"


def _config_not_an_object(directory: Path) -> str:
    (directory / "config.json").write_text("[1, 2]")
    return "config.json"


def _no_weights(directory: Path) -> str:
    (directory / "model.safetensors").unlink()
    return "no weights"


def _missing_shard(directory: Path) -> str:
    (directory / "model.safetensors").rename(directory / "model-00001-of-00002.safetensors")
    index = {"metadata": {}, "weight_map": {"model.norm.weight": "model-00002-of-00002.safetensors",
                                            "model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}  # fmt: skip
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    return "model-00002-of-00002.safetensors"


def _wrong_shapes(directory: Path) -> str:
    data = json.loads((directory / "config.json").read_text())
    data["intermediate_size"] *= 2
    (directory / "config.json").write_text(json.dumps(data))
    return "config.json"


def _missing_tensor(directory: Path) -> str:
    from safetensors.torch import load_file, save_file

    weights = directory / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.norm.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    return "model.norm.weight"


BREAKAGES: dict[str, Callable[[Path], str]] = {
    "truncated": _truncate,
    "corrupt header": _corrupt_header,
    "garbage": _garbage,
    "config not json": _config_not_json,
    "config not an object": _config_not_an_object,
    "no weights": _no_weights,
    "missing shard": _missing_shard,
    "wrong shapes": _wrong_shapes,
    "missing tensor": _missing_tensor,
}


@pytest.fixture(params=list(BREAKAGES))
def broken(request: pytest.FixtureRequest, tmp_path: Path, byte_random_model_dir: Path) -> tuple[Path, str]:
    """``(checkpoint, what the message must name)``."""
    checkpoint = shutil.copytree(byte_random_model_dir, tmp_path / "broken")
    return checkpoint, BREAKAGES[request.param](checkpoint)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_broken_checkpoint_is_one_line_naming_the_file(
    command: str, broken: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint, named = broken
    assert main(command_lines(checkpoint, tmp_path)[command]) == 2
    line = one_error_line(capsys)
    assert str(checkpoint) in line and named in line, line


def test_a_broken_checkpoint_in_chat_is_one_line_for_the_dialog(broken: tuple[Path, str]) -> None:
    checkpoint, named = broken
    text = chat_load_error(checkpoint)
    assert str(checkpoint) in text and named in text, text


# --- numbers -------------------------------------------------------------------------------------

BAD_GENERATION_FLAGS = [
    ("--temperature", "nan"), ("--temperature", "inf"), ("--temperature", "-inf"),
    ("--temperature", "1e999"), ("--repetition-penalty", "nan"), ("--repetition-penalty", "inf"),
    ("--top-p", "nan"), ("--top-p", "inf"), ("--seed", "-1"), ("--seed", str(2**64)),
    ("--max-new-tokens", str(2**40)), ("--context-limit", str(2**40)), ("--top-k", str(2**40)),
    ("--threads", str(10**10)), ("--threads", "0"),
]  # fmt: skip


@pytest.mark.parametrize(("flag", "value"), BAD_GENERATION_FLAGS)
def test_ask_refuses_a_bad_number_naming_the_flag_before_loading(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A model path that does not exist: were the number checked after loading, that would be the error.
    # FLAG=VALUE: argparse takes "-inf" on its own for an option.
    assert main(["ask", "--model", str(tmp_path / "nowhere"), f"{flag}={value}", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"reasonchat: error: {flag} must be"), err


@pytest.mark.parametrize(("flag", "value"), BAD_GENERATION_FLAGS[:6])
def test_chat_refuses_a_bad_number_before_the_screen(flag: str, value: str, tmp_path: Path) -> None:
    from reasonchat.cli.app_commands import build_app
    from tests.tui.helpers import chat_args

    with pytest.raises(UserError, match=f"^{flag} must be"):
        build_app(chat_args("--model", str(tmp_path / "nowhere"), f"{flag}={value}"))


@pytest.mark.parametrize(
    ("key", "value"),
    [("temperature", "nan"), ("temperature", "inf"), ("repetition_penalty", "nan"), ("top_p", "-inf"),
     ("seed", "-5"), ("max_new_tokens", str(2**40))],
)  # fmt: skip
def test_config_file_and_environment_refuse_non_finite_values(key: str, value: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"{key} = {value}\n")  # TOML itself has nan and inf
    resolved = config.resolve(env={}, path=path)
    assert getattr(resolved.config, key) == getattr(config.Config(), key)
    assert len(resolved.problems) == 1 and repr(key) in resolved.problems[0]
    resolved = config.resolve(env={config.env_name(key): value}, path=tmp_path / "none.toml")
    assert getattr(resolved.config, key) == getattr(config.Config(), key)
    assert len(resolved.problems) == 1 and config.env_name(key) in resolved.problems[0]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -0.5])
def test_generation_settings_refuse_non_finite_temperature(value: float) -> None:
    with pytest.raises(UserError, match="temperature must be"):
        GenerationSettings(temperature=value)


async def test_the_settings_dialog_refuses_an_infinite_temperature() -> None:
    from reasonchat.tui.dialogs.settings import SettingsDialog
    from tests.tui.helpers import SMALL, make_app, wait_ready

    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+g")
        assert isinstance(app.screen, SettingsDialog)
        app.screen.query_one("#temperature").value = "1e999"  # its number field takes it: float() is inf
        await pilot.press("enter")
        assert isinstance(app.screen, SettingsDialog)  # refused, with the reason shown
        assert "temperature must be a finite number" in str(app.screen.query_one("#settings-error").render())


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--lr", "nan"), ("--lr", "inf"), ("--lr", "0"), ("--epochs", "nan"), ("--epochs", "inf"),
     ("--min-lr-ratio", "nan"), ("--min-lr-ratio", "2"), ("--weight-decay", "nan"), ("--weight-decay", "-1"),
     ("--grad-clip", "nan"), ("--grad-clip", "inf"), ("--warmup-steps", "-1"), ("--batch-size", "0"),
     ("--max-length", "1"), ("--seed", "-1"), ("--threads", "0"), ("--eval-batches", "0"),
     ("--max-steps", "0")],
)  # fmt: skip
def test_train_refuses_a_bad_number_naming_the_flag(
    flag: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--model", str(tmp_path / "nowhere"), "--data", "d.jsonl", "--out", str(tmp_path / "o")]
    assert main([*args, f"{flag}={value}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"reasonchat: error: {flag} must be"), err


@pytest.mark.parametrize(
    ("args", "flag"),
    [(["bench", "--decode-tokens", "-1"], "--decode-tokens"),
     (["bench", "--stage-tokens", "0"], "--stage-tokens"),
     (["bench", "--base-url", "http://127.0.0.1:9/v1", "--request-timeout", "inf"], "--request-timeout"),
     (["bench", "--base-url", "http://127.0.0.1:9/v1", "--request-timeout", "nan"], "--request-timeout"),
     (["demo-model", "eval", "--dialogs", "0"], "--dialogs"),
     (["demo-model", "eval", "--show-failures", "-1"], "--show-failures"),
     (["demo-model", "eval", "--seed", "-1"], "--seed"),
     (["demo-model", "build", "--threads", "0"], "--threads"),
     (["demo-model", "build", "--steps", "0"], "--steps")],
)  # fmt: skip
def test_bench_and_demo_refuse_bad_numbers_naming_the_flag(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*args, "--model", "/nowhere"] if args[0] == "bench" and "--base-url" not in args
                else args) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"reasonchat: error: {flag} must be"), err


def test_bench_refuses_a_history_length_beyond_any_context(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bench", "--history-tokens", f"1000,{2**40}"])
    assert info.value.code == 2
    assert "at most" in capsys.readouterr().err
