"""The command line builds only what the command needs: the table of which module registers which
command agrees with the modules themselves, and a replay imports none of the other commands."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys

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
