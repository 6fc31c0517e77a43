"""Shared fixtures. Every test runs with its own data and config directories, never the user's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tiny models on 2 shared cores: OpenMP's busy-wait across threads costs far more than it gives.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("REASONCHAT_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    for name in list(os.environ):
        if name.startswith("REASONCHAT_") and name != "REASONCHAT_DATA_DIR":
            monkeypatch.delenv(name)
    return data


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Qwen2.5 tokenizer (151,665 tokens, no ``<|reasoning|>`` yet), built once per session."""
    from tests.helpers.qwen import build_qwen_tokenizer

    return build_qwen_tokenizer(tmp_path_factory.mktemp("qwen-tokenizer"))
