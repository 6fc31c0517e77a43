"""``train --lora R``: low-rank adapters with peft, and the protocol's own embedding rows trained whole.

LoRA goes on the attention and MLP projections (peft's ``all-linear``: every linear layer but the
output head) unless ``--lora-targets`` names others. The rows of the tokens prepare-model added
(``<|reasoning|>`` always, ``<|im_start|>``/``<|im_end|>`` when ``--add-chatml`` added them) start as
a mean and must be learnt: they are trained through peft's trainable-token indices, so only those
rows of the embedding matrix (and of an untied output head) change, never the whole matrix.

The output is an adapter directory (``adapter_config.json``, ``adapter_model.safetensors``, the
tokenizer); ``--merge`` also writes ``OUT/merged``, a plain checkpoint with the adapter folded in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from reasonchat.errors import UserError
from reasonchat.template import IM_END, IM_START, REASONING_TOKEN
from reasonchat.token_ids import single_token_id
from reasonchat.training.prepare import added_tokens

MERGED_DIR: Final = "merged"
DEFAULT_TARGETS: Final = "all-linear"


def require_peft() -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise UserError("LoRA needs the peft package: pip install peft") from None


def trainable_token_ids(tokenizer: Any, checkpoint: Path | str) -> list[int]:
    """``<|reasoning|>``, plus the ChatML tokens when prepare-model added them to this checkpoint."""
    wanted = [REASONING_TOKEN] + [t for t in (IM_START, IM_END) if t in added_tokens(checkpoint)]
    ids = [single_token_id(tokenizer, t) for t in wanted]
    return sorted({i for i in ids if i is not None})


def _module_name(model: Any, module: Any) -> str | None:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    return None


def lora_config(model: Any, *, rank: int, alpha: float | None, targets: list[str] | None,
                token_ids: list[int]) -> Any:  # fmt: skip
    from peft import LoraConfig

    indices: dict[str, list[int]] | None = None
    if token_ids:
        embed = _module_name(model, model.get_input_embeddings())
        indices = {embed or "embed_tokens": token_ids}
        head = model.get_output_embeddings()
        tied = head is not None and head.weight is model.get_input_embeddings().weight
        if head is not None and not tied:
            # An untied head has its own rows: the model must learn to *write* <|im_end|> too.
            indices[_module_name(model, head) or "lm_head"] = token_ids
    return LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else 2 * rank,
        target_modules=targets or DEFAULT_TARGETS,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        trainable_token_indices=indices,
    )


def wrap(model: Any, config: Any) -> Any:
    from peft import get_peft_model

    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. --lora-targets that match no module
        raise UserError(f"--lora: {str(err).splitlines()[0]}") from None


def resume(model: Any, checkpoint: Path) -> Any:
    """The base ``model`` with the adapter saved in ``checkpoint``, trainable again."""
    from peft import PeftModel

    return PeftModel.from_pretrained(model, checkpoint, is_trainable=True)


def save_merged(peft_model: Any, out: Path, dtype: Any | None) -> None:
    """Base + adapter as one plain checkpoint (a copy: the training model is left as it is)."""
    import copy

    merged = copy.deepcopy(peft_model).merge_and_unload()
    if dtype is not None:
        merged = merged.to(dtype)
    merged.config.use_cache = True
    merged.save_pretrained(out)
