"""``reasonchat train``: answer-masked fine-tuning in one loop you can read top to bottom.

For every optimizer step: take ``grad_accum`` batches, count the trained (masked) tokens in all of
them, run forward/backward on each with the summed cross-entropy divided by that count (so the loss is
the mean over trained tokens whatever the padding and accumulation), clip, step AdamW with the
learning rate of a linear warmup + cosine decay schedule. fp32 on CPU; on a GPU, fp32 master weights
under bf16 autocast. Every ``eval_every`` steps the mean eval loss; every ``save_every`` steps (and on
Ctrl+C, and at the end) a checkpoint in ``OUT/checkpoint``: model and optimizer state as safetensors,
the position in the data as JSON. ``--resume`` continues from it with the same data order.

Why not transformers' ``Trainer``: the masked loss, the resumable data position, the Ctrl+C checkpoint
and the progress bar are each a few lines here; there they are callbacks, collators and a
``TrainingArguments`` with 100+ fields, and checkpoints in its own layout. See docs/training.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from reasonchat.errors import UserError
from reasonchat.settings import BOUNDS, DTYPE_SPELLINGS, DTYPES, check_flag
from reasonchat.training.data import Example, JsonlDataset, batches, collate
from reasonchat.training.prepare import check_output_dir, save_tokenizer

Log = Callable[[str], None]
CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
FORMAT = 1


@dataclass
class TrainConfig:
    model: str
    data: str
    out: str
    eval_data: str | None = None
    max_length: int = 2048
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None  # None: ``epochs`` passes over the data
    epochs: float = 1.0
    lr: float = 1e-4
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on matrices only; never on norms, biases or embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    eval_every: int = 200
    eval_batches: int | None = None  # None: the whole eval file
    save_every: int = 500
    log_every: int = 10
    shuffle_buffer: int = 10_000
    group_by_length: int = 32
    threads: int | None = None
    device: str | None = None  # None: cuda if available, else cpu
    trust_remote_code: bool = False  # run the checkpoint's own Python (auto_map), if it has any
    save_dtype: str = "auto"  # the final model's dtype; auto: the dtype the base was stored in
    resume: bool = False
    overwrite: bool = False
    progress: bool = True


@dataclass
class TrainResult:
    out: Path
    steps: int
    losses: list[float] = field(default_factory=list)  # mean train loss of every step
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    tokens: int = 0
    dropped: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    resumed_from: int | None = None


def lr_at(step: int, config: TrainConfig, total: int) -> float:
    """Linear warmup to ``lr`` over ``warmup_steps``, then cosine decay to ``lr * min_lr_ratio``."""
    peak, floor = config.lr, config.lr * config.min_lr_ratio
    if step < config.warmup_steps:
        return peak * (step + 1) / config.warmup_steps
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (peak - floor)


class _StopFlag:
    """The first Ctrl+C asks the loop to stop at the end of the step (and save); a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay, seen = [], [], set()
    embeddings = {id(model.get_input_embeddings().weight)}
    for _, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.dim() >= 2 and id(param) not in embeddings else no_decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _optimizer_tensors(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """AdamW state as flat tensors (for safetensors) plus the JSON-able rest."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            name = f"{index}.{key}"
            if hasattr(value, "shape"):
                tensors[name] = value.detach().contiguous().cpu()
            else:
                scalars[name] = value
    groups = [{k: v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"scalars": scalars, "param_groups": groups}


def _load_optimizer(optimizer: Any, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = meta["param_groups"]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    def __init__(self, config: TrainConfig, log: Log = print) -> None:
        self.config = config
        self.log = log
        self.out = Path(config.out).expanduser()
        self.checkpoint_dir = self.out / CHECKPOINT_DIR

    # -- setup --------------------------------------------------------------------------------------

    def _check(self) -> None:
        c = self.config
        for name in (f.name for f in fields(c)):
            # --epochs means nothing once --max-steps is given
            if name in BOUNDS and not (name == "epochs" and c.max_steps is not None):
                check_flag(name, getattr(c, name))
        if c.save_dtype not in DTYPE_SPELLINGS:
            raise UserError(f"unknown --save-dtype {c.save_dtype!r} (choose from {', '.join(DTYPES)})")
        if c.resume:
            if not (self.checkpoint_dir / STATE_FILE).is_file():
                raise UserError(f"nothing to resume: no checkpoint in {self.checkpoint_dir}")
        else:
            check_output_dir(self.out, c.overwrite)

    def _device(self) -> Any:
        import torch

        if self.config.device:
            if self.config.device.startswith("cuda") and not torch.cuda.is_available():
                raise UserError(f"--device {self.config.device}: torch sees no CUDA device")
            return torch.device(self.config.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def _load(self, source: Path | str) -> tuple[Any, Any]:
        from reasonchat.engine.loading import check_checkpoint, check_tokenizer, load_tokenizer, load_weights
        from reasonchat.training.prepare import _validate_base

        text, is_local = _validate_base(os.fspath(source), None)
        if is_local:
            check_checkpoint(text)
        trust = self.config.trust_remote_code
        tokenizer = load_tokenizer(text, trust_remote_code=trust)
        check_tokenizer(tokenizer, text)  # ChatML tokens and <|reasoning|>: run prepare-model first
        model = load_weights(text, trust_remote_code=trust, local_only=True, dtype="float32")
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            raise UserError(
                f"the tokenizer of {text} has {len(tokenizer)} tokens but the model only {rows} "
                "embedding rows: run `reasonchat prepare-model` first"
            )
        return model, tokenizer

    # -- the loop -----------------------------------------------------------------------------------

    def run(self, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
        import torch

        c = self.config
        self._check()
        if c.threads:
            torch.set_num_threads(c.threads)
        device = self._device()
        state: dict[str, Any] = {}
        if c.resume:
            state = json.loads((self.checkpoint_dir / STATE_FILE).read_text())
            if state.get("format") != FORMAT:
                raise UserError(f"{self.checkpoint_dir} was written by another version of the trainer")
            model_source: Path | str = self.checkpoint_dir
        else:
            model_source = c.model
        model, tokenizer = self._load(model_source)
        base_dtype = state.get("base_dtype") or _stored_dtype(model_source)
        torch.manual_seed(c.seed)

        train_set = JsonlDataset(c.data, tokenizer, c.max_length)
        n_examples = train_set.validate()
        eval_set = None
        if c.eval_data:
            eval_set = JsonlDataset(c.eval_data, tokenizer, c.max_length)
            eval_set.validate()
        steps_per_epoch = max(1, math.ceil(n_examples / (c.batch_size * c.grad_accum)))
        total = c.max_steps or max(1, math.ceil(c.epochs * steps_per_epoch))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

        model.to(device)
        model.config.use_cache = False
        model.train()
        optimizer = torch.optim.AdamW(
            _param_groups(model, c.weight_decay), lr=c.lr, betas=(c.beta1, c.beta2),
            fused=device.type == "cuda",
        )  # fmt: skip
        step, epoch, position = 0, 0, 0
        result = TrainResult(out=self.out, steps=0)
        if state:
            from safetensors.torch import load_file

            _load_optimizer(optimizer, load_file(self.checkpoint_dir / OPTIMIZER_FILE), state["optimizer"])
            step, epoch, position = state["step"], state["epoch"], state["position"]
            result.losses = state.get("losses", [])
            result.eval_losses = [tuple(x) for x in state.get("eval_losses", [])]
            result.tokens = state.get("tokens", 0)
            result.resumed_from = step
            if "torch_rng" in state:
                torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
            self.log(f"resuming at step {step} of {total} (epoch {epoch}, batch {position})")
        autocast = _autocast(device)

        def batch_stream() -> Any:
            nonlocal epoch, position
            while True:
                stream = batches(train_set, c.batch_size, seed=c.seed, epoch=epoch,
                                 shuffle_buffer=c.shuffle_buffer, group_by_length=c.group_by_length)  # fmt: skip
                produced = 0
                for index, batch in enumerate(stream):
                    if index < position:
                        continue  # a resumed run replays the pass up to where it stopped
                    produced += 1
                    position = index + 1
                    yield batch
                if position == 0 and produced == 0:
                    raise UserError(
                        f"every example in {c.data} is longer than --max-length {c.max_length}"
                    )
                result.dropped = train_set.stats.dropped
                epoch, position = epoch + 1, 0

        stream = batch_stream()
        started = time.perf_counter()
        window_tokens, window_start = 0, started
        progress = _Progress(total, enabled=c.progress, start=step, log=self.log)
        try:
            with _StopFlag() as stop, progress:
                while step < total:
                    micro = [next(stream) for _ in range(c.grad_accum)]
                    batches_cpu = [collate(b, pad_id) for b in micro]
                    trained = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches_cpu)
                    lr = lr_at(step, c, total)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss_sum = 0.0
                    for b in batches_cpu:
                        b = {k: v.to(device) for k, v in b.items()}
                        with autocast:
                            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                           use_cache=False).logits  # fmt: skip
                        loss = _masked_loss_sum(logits, b["labels"])
                        (loss / max(1, trained)).backward()
                        loss_sum += float(loss.detach())
                        window_tokens += int(b["attention_mask"].sum())
                    if c.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    step_loss = loss_sum / max(1, trained)
                    result.losses.append(step_loss)
                    now = time.perf_counter()
                    result.tokens += window_tokens
                    tps = window_tokens / max(1e-9, now - window_start)
                    window_tokens, window_start = 0, now
                    progress.update(step, step_loss, tps)
                    if step % c.log_every == 0 and not c.progress:
                        self.log(f"step {step}/{total} loss {step_loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s")
                    if on_step is not None:
                        on_step(step, step_loss)
                    if eval_set is not None and (step % c.eval_every == 0 or step == total):
                        eval_loss = self.evaluate(model, eval_set, pad_id, device, autocast,
                                                  c.batch_size, c.eval_batches)  # fmt: skip
                        result.eval_losses.append((step, eval_loss))
                        progress.print(f"step {step}: train loss {step_loss:.4f}, eval loss {eval_loss:.4f}")
                    if stop.requested:
                        result.interrupted = True
                        break
                    if step % c.save_every == 0 and step < total:
                        self.save_checkpoint(model, tokenizer, optimizer, step, epoch, position,
                                             result, base_dtype)  # fmt: skip
        except KeyboardInterrupt:
            result.interrupted = True  # a second Ctrl+C: the last saved checkpoint stands
            raise
        result.steps = step
        result.elapsed_s = time.perf_counter() - started
        result.dropped = max(result.dropped, train_set.dropped_so_far)
        if result.dropped:
            self.log(f"dropped {result.dropped} example(s) longer than --max-length {c.max_length}")
        self.save_checkpoint(model, tokenizer, optimizer, step, epoch, position, result, base_dtype)
        if result.interrupted:
            self.log(
                f"interrupted at step {step}/{total}; checkpoint saved in {self.checkpoint_dir} "
                "(continue with --resume)"
            )
            return result
        self.save_final(model, tokenizer, base_dtype)
        return result

    @staticmethod
    def evaluate(model: Any, dataset: JsonlDataset, pad_id: int, device: Any, autocast: Any,
                 batch_size: int = 8, max_batches: int | None = None) -> float:  # fmt: skip
        """Mean loss per trained token over ``dataset`` (in file order)."""
        import torch

        model.eval()
        total, count = 0.0, 0
        pending: list[Example] = []

        def run(items: list[Example]) -> None:
            nonlocal total, count
            b = {k: v.to(device) for k, v in collate(items, pad_id).items()}
            with torch.no_grad(), autocast:
                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                               use_cache=False).logits  # fmt: skip
            total += float(_masked_loss_sum(logits, b["labels"]))
            count += int((b["labels"][:, 1:] != -100).sum())

        done = 0
        for example in dataset:
            pending.append(example)
            if len(pending) == batch_size:
                run(pending)
                pending, done = [], done + 1
                if max_batches is not None and done >= max_batches:
                    break
        if pending:
            run(pending)
        model.train()
        return total / max(1, count)

    # -- saving -------------------------------------------------------------------------------------

    def save_checkpoint(self, model: Any, tokenizer: Any, optimizer: Any, step: int, epoch: int,
                        position: int, result: TrainResult, base_dtype: str | None) -> None:  # fmt: skip
        """Write ``OUT/checkpoint`` atomically (a temp dir renamed over the old one)."""
        import torch
        from safetensors.torch import save_file

        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / (CHECKPOINT_DIR + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        model.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
        tensors, meta = _optimizer_tensors(optimizer)
        save_file(tensors, tmp / OPTIMIZER_FILE)
        state = {
            "format": FORMAT,
            "step": step,
            "epoch": epoch,
            "position": position,
            "optimizer": meta,
            "losses": result.losses,
            "eval_losses": result.eval_losses,
            "tokens": result.tokens,
            "base_dtype": base_dtype,
            "torch_rng": torch.get_rng_state().tolist(),
            "config": asdict(self.config),
        }
        (tmp / STATE_FILE).write_text(json.dumps(state))
        old = self.out / (CHECKPOINT_DIR + ".old")
        if self.checkpoint_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            self.checkpoint_dir.rename(old)
        tmp.rename(self.checkpoint_dir)
        if old.exists():
            shutil.rmtree(old)

    def save_final(self, model: Any, tokenizer: Any, base_dtype: str | None) -> None:
        """The trained model in ``OUT`` itself, ready for ``reasonchat chat --model OUT``."""
        import copy

        import torch

        wanted = self.config.save_dtype
        name = DTYPE_SPELLINGS.get(wanted, "?") if wanted != "auto" else base_dtype
        if name == "?":
            raise UserError(f"unknown --save-dtype {wanted!r}")
        final = model
        if name and name != "float32":
            final = copy.deepcopy(model).to(getattr(torch, name))
        final.config.use_cache = True
        final.save_pretrained(self.out)
        save_tokenizer(tokenizer, self.out)
        model.config.use_cache = False


def _stored_dtype(source: Path | str) -> str | None:
    try:
        config = json.loads((Path(source) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("dtype") or config.get("torch_dtype")
    return value if isinstance(value, str) else None


def _masked_loss_sum(logits: Any, labels: Any) -> Any:
    """Summed next-token cross-entropy over the positions whose label is not −100."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=-100,
        reduction="sum",
    )


def _autocast(device: Any) -> Any:
    import contextlib

    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class _Progress:
    """A rich progress bar with loss, tokens/s and ETA; silent when disabled."""

    def __init__(self, total: int, *, enabled: bool, start: int = 0, log: Log = print) -> None:
        self.enabled = enabled
        self.log = log
        self.total = total
        self.start = start
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[tps]} tok/s"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TimeElapsedColumn(),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self.start, loss="-", tps="-"
            )
        return self

    def update(self, step: int, loss: float, tps: float) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step, loss=f"{loss:.4f}", tps=f"{tps:,.0f}")

    def print(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)
        else:
            self.log(message)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)  # type: ignore[arg-type]


def train(config: TrainConfig, log: Log = print,
          on_step: Callable[[int, float], None] | None = None) -> TrainResult:  # fmt: skip
    """Run training as configured; see ``Trainer``."""
    return Trainer(config, log).run(on_step)
