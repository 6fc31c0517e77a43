"""Training data: JSONL conversations, streamed, tokenized with the card's template, masked, batched.

One JSON object per line, in either shape ``prepare_conversation_template`` accepts. Each example is
rendered with ``apply_chat_template(history, False, False)`` (the history alone, no generation
prompt), tokenized the way the engine tokenizes prompts, and masked with ``create_answer_mask``.
Examples longer than ``max_length`` tokens are dropped and counted, never truncated (a truncated
example would teach the model to stop mid-answer, or never to stop).

The file is read line by line on every pass; nothing but a shuffle buffer is held in memory.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonchat.errors import UserError
from reasonchat.template import apply_chat_template
from reasonchat.training.masks import create_answer_mask, prepare_conversation_template


@dataclass
class Example:
    input_ids: list[int]
    mask: list[bool]
    line: int

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class PassStats:
    """Counts of the last complete pass over the file."""

    examples: int = 0
    kept: int = 0
    dropped: int = 0  # longer than max_length
    tokens: int = 0  # tokens of the kept examples
    trained_tokens: int = 0  # of which inside the mask


class JsonlDataset:
    """Streams ``(input_ids, mask)`` examples from a JSONL file. Iterate it as many times as needed."""

    def __init__(self, path: str | os.PathLike[str], tokenizer: Any, max_length: int = 2048) -> None:
        self.path = Path(path).expanduser()
        self.tokenizer = tokenizer
        if max_length < 2:
            raise UserError(f"--max-length must be at least 2, got {max_length}")
        self.max_length = max_length
        if not self.path.is_file():
            raise UserError(f"data file not found: {self.path}")
        self.stats = PassStats()
        self._current = PassStats()

    def records(self) -> Iterator[tuple[int, list[dict[str, str]]]]:
        """``(line number, history)`` for every non-blank line; a bad line raises ``UserError``."""
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    example = json.loads(line)
                except json.JSONDecodeError as err:
                    raise UserError(f"{self.path}:{number}: not valid JSON ({err.msg})") from None
                try:
                    history = prepare_conversation_template(example)
                except (ValueError, TypeError) as err:
                    raise UserError(f"{self.path}:{number}: {err}") from None
                yield number, history

    def validate(self) -> int:
        """Read the whole file once (without tokenizing): the example count, or the first bad line."""
        count = sum(1 for _ in self.records())
        if count == 0:
            raise UserError(f"{self.path} has no examples")
        return count

    def encode(self, history: list[dict[str, str]], line: int = 0) -> Example:
        text = apply_chat_template(
            history, add_reasoning_generation_prompt=False, add_assistant_generation_prompt=False
        )
        # The engine encodes prompts with tokenizer(text): train on exactly the same ids.
        input_ids = list(self.tokenizer(text)["input_ids"])
        return Example(input_ids, create_answer_mask(input_ids, self.tokenizer), line)

    def __iter__(self) -> Iterator[Example]:
        current = self._current = PassStats()
        for number, history in self.records():
            example = self.encode(history, number)
            current.examples += 1
            if len(example) > self.max_length:
                current.dropped += 1
                continue
            current.kept += 1
            current.tokens += len(example)
            current.trained_tokens += sum(example.mask)
            yield example
        self.stats = current

    @property
    def dropped_so_far(self) -> int:
        return self._current.dropped


def shuffled(items: Iterable[Example], buffer_size: int, rng: random.Random) -> Iterator[Example]:
    """A streaming shuffle: a reservoir of ``buffer_size`` items, emptied in random order."""
    if buffer_size <= 1:
        yield from items
        return
    buffer: list[Example] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        index = rng.randrange(buffer_size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def batches(
    dataset: Iterable[Example],
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shuffle_buffer: int = 10_000,
    group_by_length: int = 32,
) -> Iterator[list[Example]]:
    """The batches of one pass, in an order fixed by ``(seed, epoch)``: a resumed run replays it.

    With ``group_by_length`` > 1, windows of that many batches are sorted by length before they are cut
    into batches (less padding), and the batches of a window are then shuffled.
    """
    rng = random.Random(f"{seed}/{epoch}")
    stream = shuffled(dataset, shuffle_buffer, rng)
    window = batch_size * max(1, group_by_length)
    pending: list[Example] = []

    def flush(items: list[Example]) -> Iterator[list[Example]]:
        if group_by_length > 1:
            items = sorted(items, key=len)
        chunks = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        rng.shuffle(chunks)
        yield from chunks

    for example in stream:
        pending.append(example)
        if len(pending) == window:
            yield from flush(pending)
            pending = []
    if pending:
        yield from flush(pending)


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: ``input_ids``, ``attention_mask`` and ``labels`` (−100 outside the mask)."""
    import torch

    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example)
        ids[row, :n] = torch.tensor(example.input_ids, dtype=torch.long)
        attention[row, :n] = 1
        mask = torch.tensor(example.mask, dtype=torch.bool)
        labels[row, :n] = torch.where(mask, ids[row, :n], torch.full_like(ids[row, :n], -100))
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def write_jsonl(path: str | os.PathLike[str], examples: Iterable[dict[str, Any]]) -> int:
    """Write ``examples`` one per line (UTF-8, no ASCII escaping); the count written."""
    count = 0
    with Path(path).open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(example, ensure_ascii=False) + "\n")
            count += 1
    return count
