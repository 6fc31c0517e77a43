"""What the command line hands to the app: how to load the model, where to save, what to continue."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reasonchat.conversation import Conversation
from reasonchat.engine.protocol import Backend
from reasonchat.settings import GenerationSettings
from reasonchat.store import Store
from reasonchat.template import DEFAULT_CONTEXT_LIMIT, DEFAULT_SYSTEM_PROMPT

Progress = Callable[[str], None]
# Called in a background thread, after the first frame: it may import torch and take minutes.
BackendLoader = Callable[[Progress], Backend]


@dataclass
class AppOptions:
    load_backend: BackendLoader
    model_label: str
    store: Store | None = None
    conversation: Conversation | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    context_limit: int = DEFAULT_CONTEXT_LIMIT
    theme: str | None = None
    # Where screenshots go (its screenshots/ folder); None: $REASONCHAT_DATA_DIR, else the user data dir.
    data_dir: Path | None = None
    # Shown as notifications once the app is up (a broken config file, for instance).
    notices: tuple[str, ...] = ()
