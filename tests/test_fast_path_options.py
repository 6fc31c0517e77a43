"""How the fast decode path is switched: ``--compile`` / ``--no-compile``, ``compile`` in config.toml,
``REASONCHAT_COMPILE``; unset, the loader decides (on with CUDA, off on CPU). No model is loaded here."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from reasonchat import config
from reasonchat.cli.model_options import add_model_arguments, effective_config, open_backend


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return parser.parse_args(list(argv))


def write_config(text: str) -> Path:
    path = config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_unset_means_the_loader_decides() -> None:
    resolved = effective_config(parse())
    assert resolved.config.compile is None and resolved.sources["compile"] == "default"


@pytest.mark.parametrize(("argv", "expected"), [(["--compile"], True), (["--no-compile"], False)])
def test_the_flags(argv: list[str], expected: bool) -> None:
    resolved = effective_config(parse(*argv))
    assert resolved.config.compile is expected and resolved.sources["compile"] == "flag --compile"


def test_the_config_file_and_a_flag_over_it() -> None:
    write_config('model = "x"\ncompile = true\n')
    resolved = effective_config(parse())
    assert resolved.config.compile is True and resolved.sources["compile"] == "config file, line 2"
    assert effective_config(parse("--no-compile")).config.compile is False


@pytest.mark.parametrize("value", ['"yes"', "1", "0.5"])
def test_a_config_value_that_is_not_a_boolean_is_reported_and_ignored(value: str) -> None:
    write_config(f"compile = {value}\n")
    resolved = config.resolve()
    assert resolved.config.compile is None
    (problem,) = resolved.problems
    assert "'compile' must be true or false" in problem and "line 1" in problem


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("on", True), ("TRUE", True), ("0", False), ("off", False)])
def test_the_environment(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONCHAT_COMPILE", raw)
    resolved = config.resolve()
    assert resolved.config.compile is expected and resolved.sources["compile"] == "env REASONCHAT_COMPILE"


def test_a_bad_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONCHAT_COMPILE", "maybe")
    resolved = config.resolve()
    assert resolved.config.compile is None
    assert resolved.problems == ("REASONCHAT_COMPILE: must be true or false (or 1/0), got 'maybe'; ignored",)


@pytest.mark.parametrize(("argv", "override", "expected"), [
    ([], None, None), (["--compile"], None, True), (["--no-compile"], None, False), (["--compile"], False, False),
])  # fmt: skip
def test_open_backend_hands_the_setting_to_the_loader(
    argv: list[str], override: bool | None, expected: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reasonchat.engine import transformers_backend

    seen: dict[str, Any] = {}
    monkeypatch.setattr(transformers_backend, "load_backend", lambda model, **kwargs: seen.update(kwargs))
    open_backend(parse("--model", "m", *argv), compile=override)
    assert seen["compile"] is expected


def test_the_loader_defaults_to_the_fast_path_on_cuda_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from reasonchat.engine import transformers_backend

    made: list[bool] = []

    class Loaded:
        def __init__(self, device: str) -> None:
            import torch

            self.input_device = torch.device(device)

    class Backend:
        def __init__(self, loaded: Any, *, cache_reuse: bool, fast: bool, progress: Any) -> None:
            made.append(fast)

    monkeypatch.setattr(transformers_backend, "TransformersBackend", Backend)
    for device, asked in (("cpu", None), ("cuda", None), ("cuda", False), ("cpu", True)):
        monkeypatch.setattr(transformers_backend, "load_model", lambda model, _d=device, **kwargs: Loaded(_d))
        transformers_backend.load_backend("m", compile=asked)
    assert made == [False, True, False, True]
