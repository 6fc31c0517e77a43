"""``reasonchat chat`` builds the app from flags, environment and config file; bad input is refused
before the screen is taken over, and config problems show inside the app."""

from __future__ import annotations

import pytest

from reasonchat import config
from reasonchat.cli.app_commands import build_app
from reasonchat.conversation import Conversation
from reasonchat.errors import UserError
from reasonchat.store import Store
from tests.tui.helpers import SMALL, chat, chat_args


def write_config(text: str) -> None:
    path = config.config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_flags_env_and_config_reach_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    write_config('system_prompt = "From config"\ncontext_limit = 9000\nmax_new_tokens = 100\n')
    monkeypatch.setenv("REASONCHAT_MAX_NEW_TOKENS", "200")
    app = build_app(chat_args("--context-limit", "5000", "--temperature", "0.3"))
    options = app.options
    assert options.system_prompt == "From config"
    assert options.context_limit == 5000
    assert (options.settings.max_new_tokens, options.settings.temperature) == (200, 0.3)
    assert options.model_label == "demo model" and options.notices == ()
    options.store.close()

    app = build_app(chat_args("--system", "From the flag"))
    assert app.options.system_prompt == "From the flag"
    app.options.store.close()


def test_bad_flags_and_ids_are_refused_before_the_app_starts(store: Store) -> None:
    with pytest.raises(UserError, match="--max-new-tokens must be at least 1"):
        build_app(chat_args("--max-new-tokens", "0"))
    with pytest.raises(UserError, match="no conversation"):
        build_app(chat_args("--continue", "ffffffff"))
    conversation = Conversation()
    conversation.add_turn("hi")
    store.save(conversation)
    with pytest.raises(UserError, match="--system cannot change"):
        build_app(chat_args("--continue", conversation.id, "--system", "x"))
    app = build_app(chat_args("--continue", conversation.id[:6]))
    assert app.options.conversation.id == conversation.id
    app.options.store.close()


async def test_a_broken_config_file_is_shown_in_the_app_which_still_starts() -> None:
    write_config('theme = "nord"\ncontext_limit = "big"\n')
    app = build_app(chat_args("--model", "/nonexistent"))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert app.theme == "nord"
        assert chat(app).context_limit == 32000  # the bad value fell back to the default
        messages = [n.message for n in app._notifications]
        assert any("'context_limit'" in m and "line 2" in m for m in messages), messages
    app.options.store.close()


async def test_an_unknown_theme_is_reported_not_fatal() -> None:
    write_config('theme = "no-such-theme"\n')
    app = build_app(chat_args("--model", "/nonexistent"))
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert any("Unknown theme 'no-such-theme'" in n.message for n in app._notifications)
    app.options.store.close()
