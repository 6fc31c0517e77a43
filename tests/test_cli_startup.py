"""The command line builds only what the command needs: the table of which module registers which
command agrees with the modules themselves, and a replay imports none of the other commands."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reasonchat.cli import ALL_MODULES, COMMAND_MODULES, build_parser, command_of


def registered_by(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    importlib.import_module(f"reasonchat.cli.{module}").register(subparsers)
    return set(subparsers.choices)


def test_the_table_names_every_command_and_the_module_that_registers_it() -> None:
    for module in ALL_MODULES:
        assert registered_by(module) == {name for name, owner in COMMAND_MODULES.items() if owner == module}
    full = build_parser()
    assert set(full._subparsers._group_actions[0].choices) == set(COMMAND_MODULES)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["replay", "abc"], "replay"),
        (["--data-dir", "replay", "list"], "list"),  # the value of --data-dir is not the command
        (["--data-dir=x", "ask", "hi"], "ask"),
        (["--version"], None),
        ([], None),
    ],
)
def test_the_command_is_found_past_global_options(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_a_replay_imports_no_other_command() -> None:
    code = (
        "import json, sys\n"
        "from reasonchat.cli import build_parser\n"
        "build_parser('replay').parse_args(['replay', 'x.json'])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('reasonchat.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = json.loads(out)
    assert "reasonchat.cli.replay_command" in loaded
    assert not [m for m in loaded if m.startswith(("reasonchat.training", "reasonchat.engine"))]
    assert not {"reasonchat.cli.ask_command", "reasonchat.cli.training_commands", "reasonchat.cli.bench_command"} & set(loaded)


def test_an_unknown_command_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    from reasonchat.cli import main

    with pytest.raises(SystemExit):
        main(["nosuchcommand"])
    err = capsys.readouterr().err
    assert "replay" in err and "train" in err


def test_a_replay_imports_no_markdown_toml_or_secrets_before_its_first_frame(tmp_path: Path) -> None:
    """What a replay's first frame waits for is kept to what it needs (its target to measure: 1.25x a
    bare Textual app's first frame): the panes' Markdown comes after it, a config file is parsed only
    when there is one, ids need no ``secrets``, and neither the history's search nor ``--version``'s
    parsing is imported when unused."""
    from reasonchat.conversation import Conversation
    from reasonchat.transfer import to_json

    conv = Conversation()
    turn = conv.add_turn("What is 2+2?")
    turn.reasoning, turn.answer = "2+2=4", "**4**"
    path = tmp_path / "conv.json"
    path.write_text(to_json(conv), encoding="utf-8")
    code = (
        "import json, sys\n"
        "from reasonchat.cli import build_parser\n"
        "from reasonchat.cli.replay_command import build_replay_app\n"
        f"build_replay_app(build_parser('replay').parse_args(['replay', {str(path)!r}]))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    loaded = set(json.loads(out))
    assert "reasonchat.tui.replay_app" in loaded
    unused = {"markdown_it", "textual.widgets._markdown", "reasonchat.line_breaks", "tomllib", "secrets"}
    assert not (unused | {"reasonchat.search_query", "reasonchat.variants"}) & loaded
