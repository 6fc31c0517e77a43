"""``reasonchat chat`` (also plain ``reasonchat``): the full-screen app; ``reasonchat config``: the
effective settings and where each came from.

Nothing here imports textual or torch at module level: ``chat`` imports the app when it runs, and the
app imports torch only in its loading thread, after the first frame.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import Any

from reasonchat import demo_model
from reasonchat.cli.openai_options import add_backend_arguments, open_selected_backend, selected_backend
from reasonchat.cli.output import write_json
from reasonchat.cli.model_options import (
    add_generation_arguments,
    add_model_arguments,
    effective_config,
    generation_settings,
)
from reasonchat.errors import UserError
from reasonchat.sanitize import sanitize



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="open the chat app (the default when no command is given)",
        description="Full-screen chat: the model's reasoning and its answer stream side by side; "
        "every turn is saved.",
    )
    parser.add_argument(
        "--continue", dest="continue_id", metavar="ID", help="open a saved conversation (id or unique prefix)"
    )
    parser.add_argument("--system", metavar="TEXT", help="system prompt for a new conversation")
    add_model_arguments(parser)
    add_backend_arguments(parser)
    add_generation_arguments(parser)
    parser.set_defaults(func=run_chat)

    parser = subparsers.add_parser(
        "config",
        help="show the effective settings, where each came from, and the config file's path",
        description="Settings come from flags, then REASONCHAT_* environment variables, then the "
        "config file, then the defaults.",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_config)


def build_app(args: argparse.Namespace) -> Any:
    """The app for ``args``, not yet running (tests drive it with ``run_test``). Flag errors and an
    unknown ``--continue`` id raise ``UserError`` here, before the screen is taken over."""
    from reasonchat import paths
    from reasonchat.store import Store
    from reasonchat.tui.app import ReasonchatApp
    from reasonchat.tui.options import AppOptions

    selected_backend(args)  # flag errors before the screen is taken over
    resolved = effective_config(args)
    cfg = resolved.config
    settings = generation_settings(args)
    continue_id = args.continue_id
    if continue_id and args.system is not None:
        raise UserError("--system cannot change the system prompt of a saved conversation")
    store = Store.open(args.data_dir)
    try:
        conversation = store.get(store.resolve(continue_id)) if continue_id else None
    except BaseException:
        store.close()
        raise
    options = AppOptions(
        load_backend=partial(open_selected_backend, args),
        model_label=args.served_model or args.base_url or demo_model.label(cfg.model or demo_model.LABEL),
        store=store,
        conversation=conversation,
        system_prompt=cfg.system_prompt,
        settings=settings,
        context_limit=cfg.context_limit,
        theme=cfg.theme,
        data_dir=paths.data_dir(args.data_dir),
        notices=resolved.problems,
    )
    return ReasonchatApp(options)


def run_chat(args: argparse.Namespace) -> int:
    from reasonchat.tui import gc_policy

    with gc_policy.starting():  # a continued conversation's read and Textual's import: see gc_policy
        app = build_app(args)
        try:
            app.run()
        finally:
            if app.options.store is not None:
                app.options.store.close()
    return 0


def run_config(args: argparse.Namespace) -> int:
    resolved = effective_config(args)
    exists = resolved.path.is_file()
    if args.json:
        data = {
            "path": str(resolved.path),
            "exists": exists,
            "settings": {key: {"value": value, "source": source} for key, value, source in resolved.rows()},
            "problems": list(resolved.problems),
        }
        write_json(data)
        return 0
    print(f"config file: {resolved.path}" + ("" if exists else " (not found: defaults apply)"))
    for problem in resolved.problems:
        print(f"problem: {sanitize(problem)}")
    rows = [(key, _show(key, value), source) for key, value, source in resolved.rows()]
    width = max(len(key) for key, _, _ in rows)
    value_width = min(40, max(len(value) for _, value, _ in rows))
    for key, value, source in rows:
        print(f"  {key:<{width}}  {value:<{value_width}}  {source}")
    return 0


def _show(key: str, value: Any) -> str:
    if value is None:
        return demo_model.LABEL if key == "model" else "(not set)"
    if isinstance(value, str):
        return sanitize(json.dumps(value, ensure_ascii=False))
    return str(value)
