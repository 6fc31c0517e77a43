"""The ids of the protocol's special tokens in a tokenizer, for the engine and for training alike.

The tokenizer is duck-typed (a transformers tokenizer, or a test's stand-in), so importing this module
imports neither torch nor transformers.
"""

from __future__ import annotations

from typing import Any

from reasonchat.template import END_OF_TEXT, IM_END


def single_token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` if the tokenizer encodes it as exactly one token (it is in the vocabulary),
    else None."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        return None
    # A vocabulary with an unknown token encodes anything it lacks as that one id.
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is not None and ids[0] == unknown and token != getattr(tokenizer, "unk_token", None):
        return None
    return int(ids[0])


def stop_ids(tokenizer: Any, *, with_eos_token: bool = False) -> list[int]:
    """Where generation stops: ``<|im_end|>`` first, then ``<|endoftext|>`` where the tokenizer has it;
    ``with_eos_token`` adds the tokenizer's own eos (for a checkpoint whose eos is neither)."""
    ids = [single_token_id(tokenizer, IM_END), single_token_id(tokenizer, END_OF_TEXT)]
    if with_eos_token:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids if i is not None))
