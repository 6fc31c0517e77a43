"""Loading a checkpoint for the engine, with the project's own errors before and after.

transformers' messages for common mistakes mislead (a missing local path reports "Repo id must be in
the form ..."; a tokenizer without ``<|reasoning|>`` silently splits it into ~6 ordinary tokens), so
everything a user can get wrong is checked here first and reported in one line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonchat.errors import UserError
from reasonchat.settings import DTYPE_SPELLINGS, DTYPES, out_of_bounds
from reasonchat.template import IM_END, IM_START, REASONING_TOKEN
from reasonchat.token_ids import single_token_id, stop_ids

Progress = Callable[[str], None]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelLoadError(UserError):
    """The checkpoint cannot be used as given."""


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    source: str
    eos_ids: list[int]
    reasoning_id: int
    # The one thread that runs this model's compiled calls (``engine.generation_thread``), made by the
    # first backend that compiles; shared by every backend on this model.
    compiled_thread: Any = field(default=None, repr=False, compare=False)

    @property
    def input_device(self) -> Any:
        # With device_map="auto" the layers may span devices: inputs go where the embeddings are.
        return self.model.get_input_embeddings().weight.device


def resolve_source(model: str | os.PathLike[str]) -> tuple[str, bool]:
    """``(source, is_local)``: an existing directory, or something shaped like a hub id."""
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model path {text} is a file; pass the checkpoint directory")
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{text} is not a model directory (no config.json in it)")
        return str(path), True
    looks_like_path = text.startswith(("/", ".", "~")) or os.sep * 2 in text or text.count("/") > 1
    if looks_like_path or not _HUB_ID.match(text):
        raise ModelLoadError(f"model path not found: {text}")
    return text, False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _has_tokenizer_files(directory: Path) -> bool:
    # transformers 5 builds an *empty* tokenizer from a directory without any: it "loads", and the
    # ChatML check below would then blame the model for not being ChatML.
    for path in directory.iterdir():
        name = path.name
        if name in ("tokenizer.json", "tekken.json") or name.startswith("vocab"):
            return True
        if path.suffix in (".model", ".tiktoken"):
            return True
    return False


WEIGHT_INDEX = "model.safetensors.index.json"
_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_checkpoint(directory: str | os.PathLike[str]) -> None:
    """The files of a local checkpoint that transformers reads first, checked so that a broken one is
    one ``ModelLoadError`` naming the file: transformers lets safetensors' ``SafetensorError`` (which
    names no file) escape as a traceback, and reports a config.json that is not JSON as a tokenizer
    problem."""
    root = Path(directory)
    config = root / "config.json"
    try:
        data = json.loads(config.read_bytes())
    except OSError as err:
        raise ModelLoadError(f"cannot read {config}: {err.strerror or err}") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both are
        raise ModelLoadError(f"{config} is not valid JSON ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{config} is not a JSON object")
    index = root / WEIGHT_INDEX
    if index.is_file():
        try:
            shards = set(json.loads(index.read_bytes())["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ModelLoadError(f"{index} is not a safetensors index (no weight_map)") from None
        for shard in sorted(shards):
            if not isinstance(shard, str) or not (root / shard).is_file():
                raise ModelLoadError(f"{root / str(shard)} is missing (listed in {index})")
    elif not any((root / name).is_file() for name in _WEIGHT_NAMES):
        raise ModelLoadError(f"no weights in {root} (no model.safetensors or pytorch_model.bin)")
    from safetensors import SafetensorError, safe_open

    for path in sorted(root.glob("*.safetensors")):
        # Opening reads and checks the header only (it maps the data): cheap even for large shards.
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ModelLoadError(f"{path} is truncated or corrupt ({_first_line(err)})") from None


def remote_code_refused(err: BaseException, source: str) -> ModelLoadError | None:
    """The one-line error for transformers refusing a checkpoint's own code (``auto_map``) because
    ``trust_remote_code`` was False, or None when ``err`` is something else."""
    if "trust_remote_code" not in str(err) and "custom code" not in str(err):
        return None
    return ModelLoadError(
        f"{source} comes with its own Python code (auto_map in its config), which reasonchat runs only "
        "with --trust-remote-code: pass it only for a checkpoint whose code you have read and trust"
    )


def load_weights(source: str, *, trust_remote_code: bool, local_only: bool, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM.from_pretrained`` for every loader of ours (engine, train, prepare-model):
    ``trust_remote_code`` is always passed (left ``None``, transformers *asks* on stdin whether to run
    the checkpoint's code, and a ``y`` runs it); any failure is one ``ModelLoadError``; weights that do
    not fit the config, or are missing from the files, are refused rather than silently re-initialised
    (transformers would log a table about it and carry on with random weights for the missing ones).
    Callers run ``check_checkpoint`` on a local directory first: before the tokenizer, which reads
    config.json too."""
    from transformers import AutoModelForCausalLM

    try:
        with _quiet():  # the load report: what it says is raised below, in one line
            model, info = AutoModelForCausalLM.from_pretrained(
                source,
                trust_remote_code=trust_remote_code,
                local_files_only=local_only,
                ignore_mismatched_sizes=True,
                output_loading_info=True,
                **kwargs,
            )
    except ModelLoadError:
        raise
    except Exception as err:
        # Whatever a hostile or broken checkpoint makes transformers, torch or safetensors raise
        # (OSError, ValueError, RuntimeError, SafetensorError, TypeError from a config field of the
        # wrong type, ...) is a problem with that checkpoint, not with reasonchat. Out-of-memory
        # errors are RuntimeErrors: the caller that can advise on them catches them first.
        if _is_out_of_memory(err):
            raise
        raise remote_code_refused(err, source) or ModelLoadError(
            f"cannot load the model in {source}: {_first_line(err)}"
        ) from None
    mismatched = sorted(info.get("mismatched_keys") or (), key=lambda item: item[0])
    if mismatched:
        key, stored, expected = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise ModelLoadError(
            f"the weights in {source} do not fit its config.json: {key} is {list(stored)} in the "
            f"weights, {list(expected)} per the config{more}"
        )
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelLoadError(f"the weights in {source} lack {missing[0]}{more}")
    return model


@contextmanager
def _quiet() -> Iterator[None]:
    """transformers' warnings off while it loads: they go to stderr (under the app's screen, or around
    the one line a failure ends in), and what matters in them is raised as a ``ModelLoadError``."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def _is_out_of_memory(err: BaseException) -> bool:
    import torch

    return isinstance(err, torch.cuda.OutOfMemoryError)


def load_tokenizer(source: str, *, trust_remote_code: bool = False, local_only: bool = True) -> Any:
    from transformers import AutoTokenizer

    directory = Path(source)
    if directory.is_dir() and not _has_tokenizer_files(directory):
        raise ModelLoadError(
            f"no tokenizer in {source} (no tokenizer.json or vocabulary file); "
            "save the tokenizer next to the weights (tokenizer.save_pretrained)"
        )
    try:
        with _quiet():
            return AutoTokenizer.from_pretrained(
                source, trust_remote_code=trust_remote_code, local_files_only=local_only
            )
    except Exception as err:  # tokenizers' own errors are plain Exceptions
        raise remote_code_refused(err, source) or ModelLoadError(
            f"no usable tokenizer in {source}: {_first_line(err)}"
        ) from None


def check_tokenizer(tokenizer: Any, source: str) -> tuple[int, list[int]]:
    """``(reasoning_id, eos_ids)``, or a ``ModelLoadError`` saying what is missing and what to do."""
    for token in (IM_START, IM_END):
        if single_token_id(tokenizer, token) is None:
            raise ModelLoadError(
                f"the tokenizer in {source} has no {token} token: this is not a ChatML model "
                "(`reasonchat prepare-model --add-chatml` adds the ChatML tokens)"
            )
    reasoning_id = single_token_id(tokenizer, REASONING_TOKEN)
    if reasoning_id is None:
        raise ModelLoadError(
            f"the tokenizer in {source} has no {REASONING_TOKEN} special token "
            f"(it would split into ordinary tokens); run `reasonchat prepare-model {source} OUT` first"
        )
    # What matters is that decoding skips it. Some exports mark added tokens special without listing
    # them in ``all_special_tokens``; those work, an ordinary added token would show in the text.
    if tokenizer.decode([reasoning_id], skip_special_tokens=True) != "":
        raise ModelLoadError(
            f"{REASONING_TOKEN} is an ordinary token in the tokenizer in {source}, not a special one "
            f"(it would show in decoded text); run `reasonchat prepare-model {source} OUT` first"
        )
    return reasoning_id, stop_ids(tokenizer)


def load_model(
    model: str | os.PathLike[str],
    *,
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    trust_remote_code: bool = False,
    progress: Progress | None = None,
) -> LoadedModel:
    """Load model and tokenizer from a local directory (or a hub id, from the local cache when offline)."""
    report = progress or (lambda message: None)
    report(f"checking {os.fspath(model)}")
    source, is_local = resolve_source(model)
    local_only = is_local or _offline()
    dtype_name = DTYPE_SPELLINGS.get((dtype or "auto").lower())
    if dtype_name is None:
        raise ModelLoadError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    if threads is not None and (problem := out_of_bounds("threads", threads)):
        raise ModelLoadError(f"--threads {problem}")

    report("importing torch and transformers")
    import torch
    from transformers.utils import logging as hf_logging

    # Progress goes through ``progress``; transformers' own bars would write into the TUI or the pipe.
    hf_logging.disable_progress_bar()
    if threads:
        torch.set_num_threads(threads)
    if device and device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device} was asked for, but torch sees no CUDA device")

    if is_local:
        check_checkpoint(source)  # before the tokenizer, which reads config.json too
    report("loading tokenizer")
    tokenizer = load_tokenizer(source, trust_remote_code=trust_remote_code, local_only=local_only)
    reasoning_id, eos_ids = check_tokenizer(tokenizer, source)

    report(f"loading weights ({dtype_name}, {device or 'device_map=auto'})")
    try:
        loaded = load_weights(
            source,
            trust_remote_code=trust_remote_code,
            local_only=local_only,
            dtype=dtype_name,
            device_map=device or "auto",
        )
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        raise ModelLoadError(f"out of GPU memory while loading {source}; try --dtype bfloat16") from None
    loaded.eval()

    rows = loaded.get_input_embeddings().weight.shape[0]
    if reasoning_id >= rows:
        raise ModelLoadError(
            f"{REASONING_TOKEN} has id {reasoning_id} but the embedding matrix of {source} has only "
            f"{rows} rows; run `reasonchat prepare-model` to resize it"
        )
    configured = loaded.generation_config.eos_token_id
    configured = [configured] if isinstance(configured, int) else list(configured or [])
    eos_ids = list(dict.fromkeys(eos_ids + configured))
    report("ready")
    return LoadedModel(loaded, tokenizer, source, eos_ids, reasoning_id)


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
