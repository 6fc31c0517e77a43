"""Where reasonchat keeps its files."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "reasonchat"
DATA_DIR_ENV = "REASONCHAT_DATA_DIR"
DB_NAME = "conversations.db"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """``--data-dir``, else ``$REASONCHAT_DATA_DIR``, else the platform's user data directory."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return platformdirs.user_data_path(APP_NAME)


def database_path(override: str | os.PathLike[str] | None = None) -> Path:
    return data_dir(override) / DB_NAME
