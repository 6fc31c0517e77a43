"""What the chat and replay apps share through ``BaseApp``: the palette built from Textual's
``get_system_commands`` (its own commands plus the screen in front's), screenshots saved into the data
dir, and the demo model named as such, not by the path of one install."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from textual.app import App
from textual.command import CommandList
from textual.pilot import Pilot

from reasonchat import demo_model
from reasonchat.conversation import Conversation, Turn
from reasonchat.engine.scripted import ScriptedBackend
from reasonchat.session import ChatSession
from reasonchat.store import Store
from reasonchat.tui.app import ReasonchatApp
from reasonchat.tui.base_app import BaseApp
from reasonchat.tui.replay_app import ReplayApp
from reasonchat.tui.screens.chat import ChatScreen
from reasonchat.tui.screens.history import HistoryScreen
from reasonchat.tui.screens.replay import ReplayScreen
from tests.tui.helpers import WIDE, make_app, wait_for, wait_ready

TEXTUAL_COMMANDS = ("Theme", "Quit", "Keys", "Screenshot")


async def palette_prompts(pilot: Pilot, query: str = "") -> list[str]:
    await pilot.press("ctrl+p", *query)
    commands = pilot.app.screen.query_one(CommandList)
    await wait_for(pilot, lambda: commands.option_count > 0)
    await pilot.pause(0.1)  # every provider has answered
    return [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]


def notifications(app: App[None]) -> list[str]:
    return [n.message for n in app._notifications]


def test_both_apps_share_one_base_and_textuals_own_palette_provider() -> None:
    assert issubclass(ReasonchatApp, BaseApp) and issubclass(ReplayApp, BaseApp)
    for app_class in (ReasonchatApp, ReplayApp):
        assert app_class.COMMANDS == App.COMMANDS  # no provider of ours: get_system_commands feeds it
        assert app_class.CSS_PATH == BaseApp.CSS_PATH and Path(BaseApp.CSS_PATH).is_file()
        assert app_class.HORIZONTAL_BREAKPOINTS == BaseApp.HORIZONTAL_BREAKPOINTS


async def test_the_chat_palette_lists_textuals_commands_and_the_chats() -> None:
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        prompts = await palette_prompts(pilot)
        for title in (*TEXTUAL_COMMANDS, *(entry[0] for entry in ChatScreen.PALETTE)):
            assert any(title in p for p in prompts), (title, prompts)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen))
        prompts = await palette_prompts(pilot, "new conv")
        assert "New conversation" in prompts[0], prompts


async def test_the_replay_palette_offers_the_replays_commands_and_runs_them() -> None:
    conversation = Conversation(title="Sums")
    conversation.turns.append(Turn("1+1?", "one plus one", "2"))
    app = ReplayApp(conversation, 1.0, "sums")
    async with app.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReplayScreen))
        screen = app.screen
        prompts = await palette_prompts(pilot)
        for title in (*TEXTUAL_COMMANDS, *(entry[0] for entry in ReplayScreen.PALETTE)):
            assert any(title in p for p in prompts), (title, prompts)
        assert not any("Open history" in p for p in prompts), "only the screen in front's commands"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        prompts = await palette_prompts(pilot, "whole conv")
        assert "Show the whole conversation" in prompts[0], prompts
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.finished)


# --- screenshots ---------------------------------------------------------------------------------


@pytest.fixture
def home_without_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


async def test_the_palettes_screenshot_goes_to_the_data_dirs_screenshots_folder(
    isolated_dirs: Path, home_without_downloads: Path
) -> None:
    assert not isolated_dirs.exists()  # not even the data dir yet: both are made, private
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        prompts = await palette_prompts(pilot, "screensh")
        assert "Screenshot" in prompts[0], prompts
        await pilot.press("enter")
        folder = isolated_dirs / "screenshots"
        await wait_for(pilot, lambda: any(f"Saved screenshot to {folder}" in m for m in notifications(app)))
    (shot,) = folder.iterdir()
    assert shot.suffix == ".svg" and "<svg" in shot.read_text(encoding="utf-8")
    assert any(str(shot) in m for m in notifications(app)), notifications(app)
    for directory in (isolated_dirs, folder):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert list(home_without_downloads.iterdir()) == [], "nothing in HOME, no Downloads made"


async def test_a_screenshot_honours_the_data_dir_flag_and_says_why_it_failed(
    tmp_path: Path, home_without_downloads: Path
) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the data dir should be")
    app = make_app(data_dir=blocked)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        assert app.screenshot_dir == blocked / "screenshots"
        app.deliver_screenshot()
        await pilot.pause()
        (message,) = [m for m in notifications(app) if "screenshot" in m.lower()]
        assert message.startswith("Cannot save the screenshot") and str(blocked) in message, message

    data = tmp_path / "flagged"
    app = make_app(data_dir=data)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        app.action_screenshot(filename="shot.svg")
        # Until the save is reported, not only until the file exists: the saving thread reports
        # back to the app afterwards, and must not find it gone.
        await wait_for(pilot, lambda: any("Saved screenshot" in m for m in notifications(app)))
        assert (data / "screenshots" / "shot.svg").is_file()


# --- the demo model's name -----------------------------------------------------------------------

OTHER_INSTALL = "/tmp/uvx-8f2c1/lib/python3.11/site-packages/reasonchat/demo_model/weights"


def test_a_new_conversation_saves_the_demo_model_by_name() -> None:
    conversation = Conversation()
    ChatSession(ScriptedBackend(description=str(demo_model.WEIGHTS_DIR)), conversation)
    assert conversation.model == "demo model"
    conversation = Conversation()
    ChatSession(ScriptedBackend(description="/models/qwen-reasoning"), conversation)
    assert conversation.model == "/models/qwen-reasoning"


def test_which_saved_models_name_the_demo_model(tmp_path: Path) -> None:
    assert demo_model.names_this_model(str(demo_model.WEIGHTS_DIR))
    assert demo_model.names_this_model(OTHER_INSTALL)
    assert demo_model.names_this_model(OTHER_INSTALL + "/")
    assert demo_model.names_this_model(r"C:\Users\me\AppData\Local\Temp\env\Lib\site-packages\reasonchat\demo_model\weights")
    for other in ("", "scripted", "Qwen/Qwen2.5-0.5B", "qwen @ http://127.0.0.1:8000/v1", "/srv/demo_model"):
        assert not demo_model.names_this_model(other), other
    if demo_model.is_available():
        copy = shutil.copytree(demo_model.WEIGHTS_DIR, tmp_path / "tmpab12cd" / "demo")
        assert demo_model.label(str(copy)) == "demo model"
        (copy / demo_model.BUILD_INFO).write_text("{}")  # another build is another model
        demo_model._is_a_copy.cache_clear()
        assert demo_model.label(str(copy)) == str(copy)


async def test_the_history_shows_demo_model_for_old_rows_with_an_install_path(store: Store) -> None:
    for conv_id, model in (("0dd000000001", OTHER_INSTALL), ("0dd000000002", "/models/qwen"), ("0dd000000003", "")):
        conversation = Conversation(id=conv_id, title=conv_id, model=model)
        conversation.turns.append(Turn("hi", "r", "a"))
        store.save(conversation)
    app = make_app(store=store)
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, HistoryScreen))
        screen = app.screen
        assert isinstance(screen, HistoryScreen)
        await wait_for(pilot, lambda: screen.loaded_query is not None and screen.table.row_count == 3)
        models = {key: str(screen.table.get_row(key)[-1]) for key in ("0dd000000001", "0dd000000002", "0dd000000003")}
    assert models == {"0dd000000001": "demo model", "0dd000000002": "/models/qwen", "0dd000000003": "-"}
    assert store.get("0dd000000001").model == OTHER_INSTALL, "displaying changes nothing stored"


async def test_both_apps_warm_up_in_a_thread_once_they_show(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A first stream must not compile the parser's and the highlighters' patterns on the UI thread."""
    from reasonchat.tui import base_app

    ran_on_main: list[bool] = []
    monkeypatch.setattr(base_app, "_warm_up", lambda: ran_on_main.append(threading.current_thread() is threading.main_thread()))
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await wait_ready(pilot)
        await wait_for(pilot, lambda: len(ran_on_main) == 1)
    conversation = Conversation(title="Sums")
    conversation.turns.append(Turn("1+1?", "one plus one", "2"))
    replay = ReplayApp(conversation, 0.0, "sums", data_dir=tmp_path)
    async with replay.run_test(size=WIDE) as pilot:
        await wait_for(pilot, lambda: len(ran_on_main) == 2)
    assert ran_on_main == [False, False]


async def test_a_failed_warm_up_still_turns_the_collector_back_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The app's start runs without the cycle collector until the warm-up has frozen what the app
    loaded: a warm-up that fails must not leave it off for the rest of the app's life. (A replay:
    in the chat app the model's load turns it back on as well.)"""
    import gc

    from reasonchat.tui import gc_policy
    from reasonchat.tui.widgets import model_markdown

    failed = threading.Event()

    def broken() -> None:
        failed.set()
        raise RuntimeError("a highlighter that would not compile")

    monkeypatch.setattr(model_markdown, "warm_up", broken)
    monkeypatch.setattr(gc_policy._policy, "frozen", {"app"})  # as a second app in this process: no freeze
    conversation = Conversation(title="Sums")
    conversation.turns.append(Turn("1+1?", "one plus one", "2"))
    app = ReplayApp(conversation, 0.0, "sums", data_dir=tmp_path)
    with gc_policy.starting():
        async with app.run_test(size=WIDE) as pilot:
            await wait_for(pilot, failed.is_set)
            await wait_for(pilot, gc.isenabled)  # once the failed warm-up has frozen what loaded
    assert gc.isenabled()


def test_the_warm_up_compiles_what_a_first_code_block_would() -> None:
    # In a process of its own: in this one another test may have highlighted Python already.
    code = (
        "from pygments.lexers.python import PythonLexer\n"
        "from reasonchat.tui.widgets.model_markdown import warm_up\n"
        "assert '_tokens' not in PythonLexer.__dict__\n"
        "warm_up()\n"
        "assert '_tokens' in PythonLexer.__dict__, 'the Python lexer compiled'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
