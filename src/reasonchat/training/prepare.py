"""``prepare-model``: make a base checkpoint speak the card's protocol.

As in the card: add ``<|reasoning|>`` as a special token (``add_special_tokens``), grow the embeddings
for it, and save. Beyond the card:

* transformers 5 *replaces* the extra-special-token list on ``add_special_tokens``; we pass
  ``replace_extra_special_tokens=False`` so ``<|im_start|>``/``<|im_end|>`` stay listed as special.
* the embedding matrix only ever grows. Qwen2.5 ships 151,936 rows for 151,665 tokens: resizing to
  ``len(tokenizer)`` would *shrink* it. When the new id already has a row, that row is set to the mean
  of the existing tokens' rows, as ``resize_token_embeddings(mean_resizing=True)`` does for new rows.
* the generation config stops on ``<|im_end|>`` and ``<|endoftext|>`` (base Qwen stops on the latter
  only, and would run past the end of every stage).
* idempotent: a prepared checkpoint goes through unchanged (nothing added, nothing resized).
* ``gguf_file``: transformers loads a GGUF checkpoint (dequantized, fp32) but refuses to
  ``save_pretrained`` it; its state is copied into a model built ``from_config``, which saves.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonchat.errors import UserError
from reasonchat.settings import DTYPE_SPELLINGS, DTYPES
from reasonchat.template import IM_END, IM_START, REASONING_TOKEN
from reasonchat.token_ids import single_token_id, stop_ids

Log = Callable[[str], None]

# What prepare-model added to a checkpoint, so that train --lora knows which rows are new (a JSON object
# with "added_tokens"); train carries it into every checkpoint it writes.
PREPARED_FILE = "reasonchat.json"

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.txt",
)


@dataclass
class PrepareReport:
    out: Path
    reasoning_id: int
    eos_ids: list[int]
    added_tokens: list[str] = field(default_factory=list)
    marked_special: list[str] = field(default_factory=list)
    rows_before: int = 0
    rows_after: int = 0
    tokenizer_size: int = 0
    mean_initialised: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added_tokens or self.marked_special) or self.rows_after != self.rows_before

    def summary(self) -> str:
        added = ", ".join(self.added_tokens) if self.added_tokens else "nothing"
        if self.marked_special:
            added += f" (marked special: {', '.join(self.marked_special)})"
        elif not self.changed:
            added += " (already prepared)"
        rows = (
            f"{self.rows_before:,} -> {self.rows_after:,} rows"
            if self.rows_after != self.rows_before
            else f"{self.rows_after:,} rows (unchanged)"
        )
        return (
            f"added {added}; {REASONING_TOKEN} = {self.reasoning_id}; tokenizer {self.tokenizer_size:,} "
            f"tokens; embeddings {rows}; eos {self.eos_ids}; saved to {self.out}"
        )


def save_tokenizer(tokenizer: Any, out: Path) -> None:
    """``save_pretrained`` with the card's template as the ``chat_template`` (replacing the base's: the
    checkpoint now speaks this protocol), written into ``tokenizer_config.json`` itself, where every
    reader finds it (transformers 5 would otherwise write a separate ``chat_template.jinja``), and
    without the loading flags transformers 5 writes back into the config (``local_files_only``,
    ``is_local``): they describe how we loaded it, not the tokenizer."""
    import json

    from reasonchat.chat_template import CHAT_TEMPLATE

    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out, save_jinja_files=False)
    stale = Path(out) / "chat_template.jinja"  # a copied base's file would win over the config's
    if stale.is_file():
        stale.unlink()
    path = Path(out) / "tokenizer_config.json"
    if path.is_file():
        config = json.loads(path.read_text(encoding="utf-8"))
        if any(config.pop(key, None) is not None for key in ("local_files_only", "is_local")):
            path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def added_tokens(checkpoint: Path | str) -> list[str]:
    """The tokens prepare-model added to ``checkpoint`` (``[]`` when it has no record of them)."""
    import json

    try:
        data = json.loads((Path(checkpoint) / PREPARED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    tokens = data.get("added_tokens") if isinstance(data, dict) else None
    return [t for t in tokens if isinstance(t, str)] if isinstance(tokens, list) else []


def write_added_tokens(out: Path, tokens: list[str]) -> None:
    import json

    (Path(out) / PREPARED_FILE).write_text(json.dumps({"added_tokens": tokens}) + "\n", encoding="utf-8")


def check_output_dir(out: Path, overwrite: bool, *, what: str = "output directory") -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise UserError(f"{what} {out} already exists; pass --overwrite to replace it")
        if out.is_dir():
            shutil.rmtree(out)
        else:
            out.unlink()


def _validate_base(base: str, gguf_file: str | None) -> tuple[str, bool]:
    path = Path(base).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"base model {base} is a file; pass the checkpoint directory")
        if gguf_file:
            if not (path / gguf_file).is_file():
                raise UserError(f"GGUF file {gguf_file} not found in {base}")
            return str(path), True
        if not (path / "config.json").is_file():
            raise UserError(f"{base} is not a model directory (no config.json in it)")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise UserError(f"{base} has no tokenizer (none of {', '.join(TOKENIZER_FILES[:3])}, ...)")
        return str(path), True
    if base.startswith(("/", ".", "~")) or base.count("/") > 1:
        raise UserError(f"base model not found: {base}")
    return base, False  # a hub id: loaded from the local cache when offline


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def load_base(base: str, *, gguf_file: str | None = None, trust_remote_code: bool = False,
              log: Log = print) -> tuple[Any, Any]:  # fmt: skip
    """Model and tokenizer of ``base`` (a directory or hub id), with one-line errors."""
    source, is_local = _validate_base(base, gguf_file)
    from transformers import AutoTokenizer

    from reasonchat.engine.loading import check_checkpoint, load_weights, remote_code_refused

    if is_local and not gguf_file:
        check_checkpoint(source)  # before the tokenizer, which reads config.json too
    local_only = is_local or os.environ.get("HF_HUB_OFFLINE") == "1"
    kwargs: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
    log(f"loading tokenizer from {source}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, trust_remote_code=trust_remote_code, local_files_only=local_only, **kwargs
        )
    except Exception as err:  # tokenizers' own errors are plain Exceptions
        raise remote_code_refused(err, source) or UserError(
            f"no usable tokenizer in {source}: {_first_line(err)}"
        ) from None
    log(f"loading model from {source}" + (f" ({gguf_file})" if gguf_file else ""))
    model = load_weights(
        source, trust_remote_code=trust_remote_code, local_only=local_only, dtype="auto", **kwargs
    )
    if gguf_file:
        model = _saveable_copy(model)
    return model, tokenizer


def _saveable_copy(model: Any) -> Any:
    """A GGUF-loaded model refuses ``save_pretrained``; the same weights in a ``from_config`` model don't."""
    from transformers import AutoModelForCausalLM

    config = model.config
    for attr in ("gguf_file", "_gguf_file"):
        if hasattr(config, attr):
            delattr(config, attr)
    dtype = next(model.parameters()).dtype
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state = model.state_dict()
    missing, unexpected = fresh.load_state_dict(state, strict=False)
    tied = set(getattr(fresh, "_tied_weights_keys", None) or {})
    missing = [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise UserError(
            f"the GGUF weights do not fit the model built from its config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.generation_config = model.generation_config
    return fresh


def add_protocol_tokens(tokenizer: Any, *, add_chatml: bool, source: str) -> tuple[list[str], list[str]]:
    """Add what is missing: ``<|reasoning|>`` always, the ChatML tokens only with ``add_chatml``.

    Returns ``(added, marked)``: tokens new to the vocabulary, and tokens already in it that are now
    listed as special (so ``skip_special_tokens`` hides them and transformers 5 keeps them special).
    """
    missing_chatml = [t for t in (IM_START, IM_END) if single_token_id(tokenizer, t) is None]
    if missing_chatml and not add_chatml:
        raise UserError(
            f"the tokenizer of {source} has no {' / '.join(missing_chatml)} token: it is not a ChatML "
            "model; pass --add-chatml to add the ChatML tokens (the model must then learn them)"
        )
    special = set(tokenizer.all_special_tokens)
    added, marked = [], []
    for token in (IM_START, IM_END, REASONING_TOKEN):
        if single_token_id(tokenizer, token) is None:
            added.append(token)
        elif token not in special:
            marked.append(token)
    if added or marked:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": added + marked}, replace_extra_special_tokens=False
        )
    for token in (IM_START, IM_END, REASONING_TOKEN):
        if single_token_id(tokenizer, token) is None:  # pragma: no cover - a tokenizer that ignores additions
            raise UserError(f"the tokenizer of {source} would not take {token} as one token")
    return added, marked


def grow_embeddings(model: Any, tokenizer: Any, new_ids: list[int]) -> tuple[int, int, list[int]]:
    """Make room for every token id; never shrink. Returns ``(rows_before, rows_after, mean_rows)``.

    Rows created by ``resize_token_embeddings`` are mean-initialised by transformers. New ids that land
    on rows the checkpoint already had (Qwen2.5's padding rows) get the same treatment here: the mean of
    the rows of the tokens that existed before.
    """
    import torch

    rows_before = model.get_input_embeddings().weight.shape[0]
    needed = len(tokenizer)
    if needed > rows_before:
        model.resize_token_embeddings(needed, mean_resizing=True)
    rows_after = model.get_input_embeddings().weight.shape[0]
    existing = [i for i in new_ids if i < rows_before]
    if existing:
        known = min(new_ids)  # tokens below the first new id are the ones the model knows
        with torch.no_grad():
            matrices = [model.get_input_embeddings().weight]
            output = model.get_output_embeddings()
            if output is not None and output.weight.data_ptr() != matrices[0].data_ptr():
                matrices.append(output.weight)
            for weight in matrices:
                mean = weight[:known].float().mean(dim=0).to(weight.dtype)
                for i in existing:
                    weight[i] = mean
    if getattr(model.config, "vocab_size", rows_after) < rows_after:
        model.config.vocab_size = rows_after
    return rows_before, rows_after, existing


def prepare_model(
    base: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    gguf_file: str | None = None,
    add_chatml: bool = False,
    overwrite: bool = False,
    save_dtype: str = "auto",
    trust_remote_code: bool = False,
    log: Log = print,
) -> PrepareReport:
    """Load ``base``, add the protocol tokens, grow the embeddings, set the stop tokens, save to ``out``."""
    base_text, out_path = os.fspath(base), Path(out).expanduser()
    if save_dtype not in DTYPE_SPELLINGS:
        raise UserError(f"unknown dtype {save_dtype!r} (choose from {', '.join(DTYPES)})")
    base_path = Path(base_text).expanduser()
    if base_path.exists() and out_path.exists() and base_path.resolve() == out_path.resolve():
        raise UserError("the output directory must differ from the base model's")
    _validate_base(base_text, gguf_file)
    check_output_dir(out_path, overwrite)

    model, tokenizer = load_base(base_text, gguf_file=gguf_file,
                                 trust_remote_code=trust_remote_code, log=log)  # fmt: skip
    ids_before = {t: single_token_id(tokenizer, t) for t in (IM_START, IM_END)}
    added, marked = add_protocol_tokens(tokenizer, add_chatml=add_chatml, source=base_text)
    if any(ids_before[t] is not None and single_token_id(tokenizer, t) != ids_before[t] for t in ids_before):
        raise UserError("marking the ChatML tokens special changed their ids")  # pragma: no cover
    new_ids = [single_token_id(tokenizer, t) for t in added]
    rows_before, rows_after, mean_rows = grow_embeddings(model, tokenizer, [i for i in new_ids if i is not None])

    eos = stop_ids(tokenizer, with_eos_token=True)
    model.generation_config.eos_token_id = eos
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[-1]
    if DTYPE_SPELLINGS[save_dtype] != "auto":
        import torch

        model = model.to(getattr(torch, DTYPE_SPELLINGS[save_dtype]))

    out_path.mkdir(parents=True, exist_ok=True)
    log(f"saving to {out_path}")
    model.save_pretrained(out_path)
    save_tokenizer(tokenizer, out_path)
    earlier = added_tokens(base_path) if base_path.is_dir() else []  # a prepared base keeps its record
    write_added_tokens(out_path, earlier + [t for t in added if t not in earlier])
    report = PrepareReport(
        out=out_path,
        reasoning_id=int(single_token_id(tokenizer, REASONING_TOKEN)),
        eos_ids=eos,
        added_tokens=added,
        marked_special=marked,
        rows_before=rows_before,
        rows_after=rows_after,
        tokenizer_size=len(tokenizer),
        mean_initialised=mean_rows,
    )
    return report
