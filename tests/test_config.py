"""The config file and its precedence: flags > REASONCHAT_* environment > config.toml > defaults."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from reasonchat import config
from reasonchat.cli.app_commands import register as register_app_commands
from reasonchat.settings import GenerationSettings
from reasonchat.template import DEFAULT_CONTEXT_LIMIT, DEFAULT_SYSTEM_PROMPT


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_lives_in_the_user_config_dir(tmp_path: Path) -> None:
    # conftest points XDG_CONFIG_HOME into tmp_path.
    assert config.config_path() == tmp_path / "config" / "reasonchat" / "config.toml"


def test_defaults_without_a_file(tmp_path: Path) -> None:
    resolved = config.resolve(env={}, path=tmp_path / "missing.toml")
    assert resolved.config.context_limit == DEFAULT_CONTEXT_LIMIT
    assert resolved.config.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert resolved.config.model is None
    assert set(resolved.sources.values()) == {"default"}
    assert resolved.problems == ()


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.toml",
        'model = "/models/file"\ncontext_limit = 8000\ntemperature = 1\nsystem_prompt = "From the file"\n',
    )
    env = {"REASONCHAT_CONTEXT_LIMIT": "4000", "REASONCHAT_TEMPERATURE": "0.5"}
    resolved = config.resolve({"temperature": 0.2, "model": None}, env=env, path=path)
    cfg, sources = resolved.config, resolved.sources
    assert (cfg.model, sources["model"]) == ("/models/file", "config file, line 1")
    assert (cfg.context_limit, sources["context_limit"]) == (4000, "env REASONCHAT_CONTEXT_LIMIT")
    assert (cfg.temperature, sources["temperature"]) == (0.2, "flag --temperature")
    assert (cfg.system_prompt, sources["system_prompt"]) == ("From the file", "config file, line 4")
    assert (cfg.max_new_tokens, sources["max_new_tokens"]) == (3000, "default")
    # An integer where a float is expected is accepted, as a float.
    assert isinstance(config.resolve(env={}, path=path).config.temperature, float)


def test_bad_toml_names_the_line_and_falls_back_to_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", 'model = "/m"\ncontext_limit = = 3\n')
    resolved = config.resolve(env={}, path=path)
    assert resolved.config == config.Config()
    (problem,) = resolved.problems
    assert str(path) in problem and "line 2" in problem and "defaults" in problem


@pytest.mark.parametrize(
    ("text", "key", "line", "expect"),
    [
        ('theme = "nord"\nthreads = "four"\n', "threads", 3, "must be an integer"),
        ("\n\ntemprature = 0.7\n", "temprature", 4, "unknown key"),
        ("threads = true\n", "threads", 2, "must be an integer, got a boolean"),
        ("top_p = 1.5\n", "top_p", 2, "must be in (0, 1]"),
        ('dtype = "float8"\n', "dtype", 2, "must be one of"),
        ("[model]\npath = 'x'\n", "model", 2, "must be a string, got a table"),
    ],
)
def test_a_bad_key_is_reported_with_its_line_and_skipped(
    tmp_path: Path, text: str, key: str, line: int, expect: str
) -> None:
    path = write(tmp_path / "config.toml", "max_new_tokens = 77\n" + text)
    resolved = config.resolve(env={}, path=path)
    (problem,) = resolved.problems
    assert f"line {line}" in problem and repr(key) in problem and expect in problem
    # The good keys still apply; the bad one keeps its default.
    assert resolved.config.max_new_tokens == 77
    if hasattr(config.Config, key):
        assert getattr(resolved.config, key) == getattr(config.Config(), key)


def test_a_bad_environment_value_is_reported_and_the_file_decides(tmp_path: Path) -> None:
    path = write(tmp_path / "config.toml", "context_limit = 9000\n")
    env = {"REASONCHAT_CONTEXT_LIMIT": "lots", "REASONCHAT_SEED": "", "REASONCHAT_THREADS": "0"}
    resolved = config.resolve(env=env, path=path)
    assert resolved.config.context_limit == 9000
    assert resolved.config.seed is None and resolved.config.threads is None
    assert len(resolved.problems) == 2
    assert any("REASONCHAT_CONTEXT_LIMIT" in p and "'lots'" in p for p in resolved.problems)
    assert any("REASONCHAT_THREADS" in p and "at least 1" in p for p in resolved.problems)


def test_an_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.mkdir()
    resolved = config.resolve(env={}, path=path)
    assert resolved.config == config.Config() and "cannot read" in resolved.problems[0]


def config_command(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    import argparse

    parser = argparse.ArgumentParser()
    register_app_commands(parser.add_subparsers())
    args = parser.parse_args(["config", *argv])
    assert args.func(args) == 0
    return capsys.readouterr().out


def test_config_command_shows_values_sources_and_the_path(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(config.config_path(), 'theme = "nord"\nbogus = 1\n')
    monkeypatch.setenv("REASONCHAT_MAX_NEW_TOKENS", "512")
    out = config_command(capsys)
    lines = out.splitlines()
    assert lines[0] == f"config file: {path}"
    assert any(line.startswith("problem: ") and "'bogus'" in line and "line 2" in line for line in lines)
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(rows) == set(config.KEYS)
    assert '"nord"' in rows["theme"] and rows["theme"].endswith("config file, line 1")
    assert "512" in rows["max_new_tokens"] and rows["max_new_tokens"].endswith("env REASONCHAT_MAX_NEW_TOKENS")
    assert "demo model" in rows["model"] and rows["model"].endswith("default")

    data = json.loads(config_command(capsys, "--json"))
    assert data["path"] == str(path) and data["exists"] is True
    assert data["settings"]["max_new_tokens"] == {"value": 512, "source": "env REASONCHAT_MAX_NEW_TOKENS"}


def test_config_command_without_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    out = config_command(capsys)
    assert out.splitlines()[0].endswith("(not found: defaults apply)")


def test_every_field_is_a_key_and_the_generation_defaults_are_the_settings() -> None:
    assert sorted(config.KEYS) == sorted(f.name for f in fields(config.Config))
    assert GenerationSettings.of(config.Config()) == GenerationSettings()
