"""Where reasonchat keeps its files."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "reasonchat"
DATA_DIR_ENV = "REASONCHAT_DATA_DIR"
DB_NAME = "conversations.db"
# The data dir and what we create in it are the user's alone (conversations are private).
DIR_MODE = 0o700


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


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` with mode 0700 (missing parents as ``mkdir -p`` makes them, as the store
    does for the data dir); one that exists is left as it is. Raises ``OSError``."""
    if directory.is_dir():
        return
    directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # mkdir's mode passes through the umask; the directory must end up exactly 0700.
    directory.chmod(DIR_MODE)
