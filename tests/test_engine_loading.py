"""load_model / load_backend: the real Qwen2.5 tokenizer gets ``<|reasoning|>`` = 151665, and every
mistake a user can make with a checkpoint is one clear ``ModelLoadError`` line, never transformers'
misleading message (a missing local path reports "Repo id must be in the form ...")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reasonchat.engine.loading import ModelLoadError, load_model
from reasonchat.errors import UserError
from reasonchat.settings import DTYPES
from reasonchat.template import END_OF_TEXT, IM_END, IM_START, REASONING_TOKEN
from tests.helpers.engine_fixtures import (  # noqa: F401 - fixtures
    byte_random_model_dir,
    byte_tokenizer_dir,
    qwen_backend,
    qwen_random_model_dir,
)
from tests.helpers.models import tiny_qwen2
from tests.helpers.qwen import QWEN25_VOCAB_SIZE

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "added_tokens.json", "chat_template.jinja")  # fmt: skip


def load_error(path: object, **kwargs: object) -> str:
    """The message of the ModelLoadError that loading ``path`` raises, checked to be one clean line."""
    with pytest.raises(ModelLoadError) as info:
        load_model(path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, UserError)  # the CLI exits 2
    assert info.value.exit_code == 2
    assert message and "\n" not in message
    assert "Repo id" not in message and "Traceback" not in message
    return message


def replace_tokenizer(model_dir: Path, out: Path, tokenizer: object) -> Path:
    """A copy of ``model_dir`` whose tokenizer files are those of ``tokenizer``."""
    shutil.copytree(model_dir, out)
    strip_tokenizer(out)
    tokenizer.save_pretrained(out)
    return out


def strip_tokenizer(directory: Path) -> None:
    for name in TOKENIZER_FILES:
        (directory / name).unlink(missing_ok=True)


def byte_tokenizer(*specials: str):
    """The byte-level Qwen2Tokenizer with exactly ``specials`` added as special tokens."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    from tests.helpers.qwen import _bytes_to_unicode

    vocab = {char: i for i, char in enumerate(_bytes_to_unicode().values())}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tokenizer


# --- the real Qwen2.5 tokenizer ------------------------------------------------------------------


def test_real_qwen_tokenizer_gets_reasoning_id_151665(qwen_backend) -> None:
    loaded = qwen_backend.loaded
    tokenizer = loaded.tokenizer
    assert loaded.reasoning_id == 151665
    assert tokenizer.convert_tokens_to_ids(REASONING_TOKEN) == 151665
    assert tokenizer.convert_tokens_to_ids(IM_START) == 151644
    assert REASONING_TOKEN in tokenizer.all_special_tokens
    assert len(tokenizer) == 151666
    # Stops on <|im_end|> as well as <|endoftext|> (base Qwen configs stop on the latter only).
    assert loaded.eos_ids[:2] == [151645, 151643]
    # The embedding matrix keeps Qwen2.5's 151,936 rows; 151665 lies inside it.
    assert loaded.model.get_input_embeddings().weight.shape[0] == QWEN25_VOCAB_SIZE
    # The stage-1 generation prompt is three tokens, the role one token (not ~6 ordinary ones).
    assert qwen_backend.encode(f"{IM_START}{REASONING_TOKEN}\n") == [151644, 151665, 198]
    assert not loaded.model.training
    assert str(loaded.input_device) == "cpu"
    assert qwen_backend.description == str(loaded.source)


def test_progress_callback_receives_messages(byte_random_model_dir: Path) -> None:
    messages: list[str] = []
    load_model(byte_random_model_dir, progress=messages.append)
    assert messages[0] == f"checking {byte_random_model_dir}"
    assert "loading tokenizer" in messages
    assert any(m.startswith("loading weights") for m in messages)
    assert messages[-1] == "ready"
    assert all(isinstance(m, str) and m and "\n" not in m for m in messages)


def test_progress_stops_at_the_failure(tmp_path: Path) -> None:
    messages: list[str] = []
    with pytest.raises(ModelLoadError):
        load_model(tmp_path / "nope", progress=messages.append)
    assert messages == [f"checking {tmp_path / 'nope'}"]


# --- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["missing", "./missing", "a/b/c", "~/surely-not-here-reasonchat"])
def test_missing_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    target = tmp_path / name if name == "missing" else name
    message = load_error(target)
    assert message.startswith("model path not found:")


def test_missing_hub_id_offline_is_a_clear_error() -> None:
    # Shaped like a hub id, not in the local cache, HF_HUB_OFFLINE=1 (conftest): no OSError escapes.
    message = load_error("nobody-reasonchat/not-a-model")
    assert "nobody-reasonchat/not-a-model" in message


def test_a_file_instead_of_a_directory(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not really")
    message = load_error(weights)
    assert "is a file" in message and "directory" in message


def test_a_directory_without_config(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{}")
    message = load_error(tmp_path)
    assert "no config.json" in message


def test_a_checkpoint_without_tokenizer_files(byte_random_model_dir: Path, tmp_path: Path) -> None:
    # transformers 5 "loads" an empty tokenizer here; the error must say the tokenizer is missing,
    # not that the model is not ChatML.
    copy = tmp_path / "weights-only"
    shutil.copytree(byte_random_model_dir, copy)
    strip_tokenizer(copy)
    assert (copy / "model.safetensors").is_file()
    message = load_error(copy)
    assert "no tokenizer" in message
    assert "ChatML" not in message


def test_a_tokenizer_without_reasoning_token(byte_random_model_dir: Path, tmp_path: Path) -> None:
    model_dir = replace_tokenizer(
        byte_random_model_dir, tmp_path / "m", byte_tokenizer(END_OF_TEXT, IM_START, IM_END)
    )
    message = load_error(model_dir)
    assert REASONING_TOKEN in message
    assert "reasonchat prepare-model" in message


def test_reasoning_as_an_ordinary_added_token_is_refused(
    byte_random_model_dir: Path, tmp_path: Path
) -> None:
    # One id, but not special: skip_special_tokens would leave "<|reasoning|>" in decoded text.
    tokenizer = byte_tokenizer(END_OF_TEXT, IM_START, IM_END)
    tokenizer.add_tokens([REASONING_TOKEN])
    assert len(tokenizer(REASONING_TOKEN, add_special_tokens=False)["input_ids"]) == 1
    model_dir = replace_tokenizer(byte_random_model_dir, tmp_path / "m", tokenizer)
    message = load_error(model_dir)
    assert "reasonchat prepare-model" in message
    assert "not a special" in message and "split" not in message


def test_reasoning_special_but_not_listed_is_accepted(
    byte_random_model_dir: Path, tmp_path: Path
) -> None:
    # Some exports mark added tokens special without listing them in all_special_tokens: decoding
    # skips them, so they work, exactly as such <|im_start|>/<|im_end|> tokens do.
    tokenizer = byte_tokenizer(END_OF_TEXT, IM_START, IM_END, REASONING_TOKEN)
    model_dir = replace_tokenizer(byte_random_model_dir, tmp_path / "m", tokenizer)
    loaded = load_model(model_dir)
    assert REASONING_TOKEN not in loaded.tokenizer.all_special_tokens
    assert loaded.reasoning_id == 259
    assert loaded.tokenizer.decode([259], skip_special_tokens=True) == ""


def test_reasoning_id_beyond_the_embedding_matrix(byte_tokenizer_dir: Path, tmp_path: Path) -> None:
    from tests.helpers.models import add_reasoning_token

    out = tmp_path / "small-embeddings"
    tokenizer = add_reasoning_token(byte_tokenizer_dir, out)
    assert tokenizer.convert_tokens_to_ids(REASONING_TOKEN) == 259
    tiny_qwen2(tokenizer, vocab_size=259).save_pretrained(out)  # rows 0..258: 259 is outside
    message = load_error(out)
    assert "259" in message and "rows" in message
    assert "reasonchat prepare-model" in message


def test_a_tokenizer_without_im_end(byte_random_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = byte_tokenizer(END_OF_TEXT, IM_START)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [REASONING_TOKEN]}, replace_extra_special_tokens=False
    )
    model_dir = replace_tokenizer(byte_random_model_dir, tmp_path / "m", tokenizer)
    message = load_error(model_dir)
    assert IM_END in message


def test_a_tokenizer_without_chatml_at_all(byte_random_model_dir: Path, tmp_path: Path) -> None:
    tokenizer = byte_tokenizer(END_OF_TEXT)
    tokenizer.add_special_tokens({"additional_special_tokens": [REASONING_TOKEN]})
    model_dir = replace_tokenizer(byte_random_model_dir, tmp_path / "m", tokenizer)
    message = load_error(model_dir)
    assert IM_START in message and "ChatML" in message


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float8", "int4", "fp64", "BF-16"])
def test_bad_dtype(byte_random_model_dir: Path, dtype: str) -> None:
    message = load_error(byte_random_model_dir, dtype=dtype)
    assert "dtype" in message
    assert all(choice in message for choice in ("float32", "bfloat16"))


def test_bad_dtype_is_refused_before_importing_weights(byte_random_model_dir: Path) -> None:
    messages: list[str] = []
    with pytest.raises(ModelLoadError):
        load_model(byte_random_model_dir, dtype="float8", progress=messages.append)
    assert not any("weights" in m for m in messages)


@pytest.mark.parametrize("dtype, expected", [("bf16", "bfloat16"), ("float32", "float32"),
                                             ("auto", "float32"), (None, "float32")])  # fmt: skip
def test_dtype_override(byte_random_model_dir: Path, dtype: str | None, expected: str) -> None:
    import torch

    loaded = load_model(byte_random_model_dir, dtype=dtype)
    assert loaded.model.dtype == getattr(torch, expected)
    assert dtype is None or dtype in DTYPES


def test_threads_must_be_positive(byte_random_model_dir: Path) -> None:
    assert "--threads" in load_error(byte_random_model_dir, threads=0)


def test_device_cpu(byte_random_model_dir: Path) -> None:
    loaded = load_model(byte_random_model_dir, device="cpu", threads=1)
    assert str(loaded.input_device) == "cpu"


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_device_on_a_cpu_only_machine(byte_random_model_dir: Path, device: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    message = load_error(byte_random_model_dir, device=device)
    assert f"--device {device}" in message and "CUDA" in message
