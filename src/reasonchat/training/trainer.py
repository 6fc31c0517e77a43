"""``reasonchat train``: answer-masked fine-tuning in one loop you can read top to bottom.

For every optimizer step: take ``grad_accum`` global batches (``batch_size`` per process), count the
trained (masked) tokens in all of them *across all processes*, run forward/backward on this process's
share of each with the summed cross-entropy scaled by that count (so the loss is the mean over the
global batch's trained tokens whatever the padding, accumulation and process count), clip, step AdamW
with the learning rate of a linear warmup + cosine decay schedule. fp32 on CPU; on a GPU, fp32 master
weights under bf16 autocast. Every ``eval_every`` steps the mean eval loss; every ``save_every`` steps
(and on Ctrl+C, and at the end) a checkpoint in ``OUT/checkpoint``: model (or LoRA adapter) and
optimizer state as safetensors, the position in the data as JSON. ``--resume`` continues from it with
the same data order.

One process or several (``accelerate launch``, ``--processes``): ``distributed.Cluster`` hides the
difference; the main process alone saves, logs and draws the progress bar. ``--lora``: ``lora.py``.

Why not transformers' ``Trainer``: the masked loss, the resumable data position, the Ctrl+C checkpoint
and the progress bar are each a few lines here; there they are callbacks, collators and a
``TrainingArguments`` with 100+ fields, and checkpoints in its own layout. See docs/training.md.
"""

from __future__ import annotations

import functools
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
from reasonchat.training.distributed import Cluster
from reasonchat.training.prepare import added_tokens, check_output_dir, save_tokenizer, write_added_tokens

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
    lora: int | None = None  # LoRA rank; None: train the whole model
    lora_alpha: float | None = None  # None: 2 × rank
    lora_targets: list[str] | None = None  # None: every linear layer but the output head
    merge: bool = False  # with lora: also write base + adapter as one checkpoint in OUT/merged
    gradient_checkpointing: bool = False


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
    """The first Ctrl+C asks the loop to stop at the end of the step (and save); a second one aborts.

    With several processes a launcher (torchrun, accelerate launch) that gets Ctrl+C passes the signal
    on to workers that got it from the terminal already, then kills them after 30 s: so there a repeat
    within a second counts once, and SIGTERM counts as a Ctrl+C too.
    """

    def __init__(self, also_sigterm: bool = False) -> None:
        self.requested = False
        self._debounce = 1.0 if also_sigterm else 0.0
        self._first_at = 0.0
        self._signals = (signal.SIGINT, signal.SIGTERM) if also_sigterm else (signal.SIGINT,)
        self._previous: dict[int, Any] = {}
        self._installed = False

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for number in self._signals:
                self._previous[number] = signal.getsignal(number)
                signal.signal(number, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            if time.monotonic() - self._first_at < self._debounce:
                return  # the launcher's copy of the same Ctrl+C
            raise KeyboardInterrupt
        self.requested = True
        self._first_at = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            for number, previous in self._previous.items():
                signal.signal(number, previous)


def _param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay, seen = [], [], set()
    embeddings = {id(model.get_input_embeddings().weight)}
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        # peft's trainable-token rows are embedding rows too
        is_embedding = id(param) in embeddings or "trainable_tokens" in name
        (decay if param.dim() >= 2 and not is_embedding else no_decay).append(param)
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

    def _check(self, is_main: bool = True) -> None:
        c = self.config
        for name in (f.name for f in fields(c)):
            # --epochs means nothing once --max-steps is given
            if name in BOUNDS and not (name == "epochs" and c.max_steps is not None):
                check_flag(name, getattr(c, name))
        if c.lora is not None and not 1 <= c.lora <= 4096:
            raise UserError(f"--lora must be a rank from 1 to 4096, got {c.lora}")
        if c.lora_alpha is not None and not (math.isfinite(c.lora_alpha) and c.lora_alpha > 0):
            raise UserError(f"--lora-alpha must be a positive number, got {c.lora_alpha}")
        if not c.lora and (c.lora_alpha is not None or c.lora_targets or c.merge):
            raise UserError("--lora-alpha, --lora-targets and --merge need --lora R")
        if c.save_dtype not in DTYPE_SPELLINGS:
            raise UserError(f"unknown --save-dtype {c.save_dtype!r} (choose from {', '.join(DTYPES)})")
        if c.resume:
            if not (self.checkpoint_dir / STATE_FILE).is_file():
                raise UserError(f"nothing to resume: no checkpoint in {self.checkpoint_dir}")
        elif is_main:
            check_output_dir(self.out, c.overwrite)

    def _load(self, source: Path | str, dtype: str = "float32") -> tuple[Any, Any]:
        from reasonchat.engine.loading import check_checkpoint, check_tokenizer, load_tokenizer, load_weights
        from reasonchat.training.prepare import _validate_base

        text, is_local = _validate_base(os.fspath(source), None)
        if is_local:
            check_checkpoint(text)
        trust = self.config.trust_remote_code
        tokenizer = load_tokenizer(text, trust_remote_code=trust)
        check_tokenizer(tokenizer, text)  # ChatML tokens and <|reasoning|>: run prepare-model first
        model = load_weights(text, trust_remote_code=trust, local_only=True, dtype=dtype)
        rows = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > rows:
            raise UserError(
                f"the tokenizer of {text} has {len(tokenizer)} tokens but the model only {rows} "
                "embedding rows: run `reasonchat prepare-model` first"
            )
        return model, tokenizer

    def _build_model(self, state: dict[str, Any], cluster: Cluster) -> tuple[Any, Any]:
        """The model to train: the full model (fresh, or the checkpoint's), or the base with LoRA."""
        c = self.config
        if c.resume and (state["config"].get("lora") or None) != c.lora:
            raise UserError(
                f"the checkpoint in {self.checkpoint_dir} was trained with --lora "
                f"{state['config'].get('lora')}; resume it with the same setting"
            )
        if not c.lora:
            model, tokenizer = self._load(self.checkpoint_dir if c.resume else c.model)
            if c.gradient_checkpointing:
                _checkpoint_activations(model)
            return model, tokenizer
        import torch

        from reasonchat.training import lora

        lora.require_peft()
        # LoRA is for models too big to train whole: frozen base weights in bf16 on a GPU that has it
        # (the adapters stay fp32: peft upcasts them); fp32 on CPU.
        cuda_bf16 = cluster.device.type == "cuda" and torch.cuda.is_bf16_supported()
        model, tokenizer = self._load(c.model, dtype="bfloat16" if cuda_bf16 else "float32")
        if c.gradient_checkpointing:
            _checkpoint_activations(model)
        if c.resume:
            return lora.resume(model, self.checkpoint_dir), tokenizer
        ids = lora.trainable_token_ids(tokenizer, c.model)
        config = lora.lora_config(model, rank=c.lora, alpha=c.lora_alpha, targets=c.lora_targets, token_ids=ids)
        return lora.wrap(model, config), tokenizer

    # -- the loop -----------------------------------------------------------------------------------

    def run(self, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
        import torch

        c = self.config
        if c.threads:
            torch.set_num_threads(c.threads)
        cluster = Cluster(c.device)
        self._check(cluster.is_main)  # the main process alone may clear an old output (--overwrite)
        cluster.barrier()
        device = cluster.device
        if not cluster.is_main:
            self.log = _silent  # progress, eval lines and messages come from the main process only
        state: dict[str, Any] = {}
        if c.resume:
            state = json.loads((self.checkpoint_dir / STATE_FILE).read_text())
            if state.get("format") != FORMAT:
                raise UserError(f"{self.checkpoint_dir} was written by another version of the trainer")
        torch.manual_seed(c.seed)  # LoRA's A matrices are drawn when the adapters are made
        model, tokenizer = self._build_model(state, cluster)
        model_source: Path | str = self.checkpoint_dir if c.resume and not c.lora else c.model
        base_dtype = state.get("base_dtype") or _stored_dtype(c.model if c.lora else model_source)
        prepared_tokens = added_tokens(model_source)
        torch.manual_seed(c.seed)

        train_set = JsonlDataset(c.data, tokenizer, c.max_length)
        n_examples = train_set.validate()
        eval_set = None
        if c.eval_data:
            eval_set = JsonlDataset(c.eval_data, tokenizer, c.max_length)
            eval_set.validate()
        # Every process reads the same global batches (batch_size per process) and trains its share.
        global_batch = c.batch_size * cluster.processes
        steps_per_epoch = max(1, math.ceil(n_examples / (global_batch * c.grad_accum)))
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
            if (self.checkpoint_dir / OPTIMIZER_FILE).is_file():
                from safetensors.torch import load_file

                _load_optimizer(optimizer, load_file(self.checkpoint_dir / OPTIMIZER_FILE), state["optimizer"])
            else:
                self.log("the checkpoint has no optimizer state (a sharded run): AdamW starts afresh")
            step, epoch, position = state["step"], state["epoch"], state["position"]
            position = self._repartition(state, position, epoch, cluster.processes, global_batch)
            result.losses = state.get("losses", [])
            result.eval_losses = [tuple(x) for x in state.get("eval_losses", [])]
            result.tokens = state.get("tokens", 0)
            result.resumed_from = step
            if "torch_rng" in state:
                torch.set_rng_state(torch.tensor(state["torch_rng"], dtype=torch.uint8))
            self.log(f"resuming at step {step} of {total} (epoch {epoch}, batch {position})")
        model, optimizer = cluster.prepare(model, optimizer)
        autocast = _autocast(device)

        def batch_stream() -> Any:
            nonlocal epoch, position
            while True:
                stream = batches(train_set, global_batch, seed=c.seed, epoch=epoch,
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
        progress = _Progress(total, enabled=c.progress and cluster.is_main, start=step, log=self.log)
        save = functools.partial(self.save_checkpoint, cluster, tokenizer, optimizer,
                                 base_dtype=base_dtype, prepared_tokens=prepared_tokens)  # fmt: skip
        try:
            with _StopFlag(also_sigterm=cluster.processes > 1) as stop, progress:
                while step < total:
                    # This process's share of each global batch: a stride, so lengths stay balanced.
                    shares = [_share(next(stream), cluster.rank, cluster.processes) for _ in range(c.grad_accum)]
                    batches_cpu = [collate(examples, pad_id) for examples, _ in shares]
                    local = sum(int((b["labels"][:, 1:] != -100).sum()) for b, (_, real) in
                                zip(batches_cpu, shares, strict=True) if real)  # fmt: skip
                    (trained,) = cluster.sum(local)  # the mean is over the global batch's trained tokens
                    lr = lr_at(step, c, total)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                    loss_sum = 0.0
                    for index, (b, (_, real)) in enumerate(zip(batches_cpu, shares, strict=True)):
                        b = {k: v.to(device) for k, v in b.items()}
                        with cluster.no_sync(model, last=index == len(batches_cpu) - 1):
                            with autocast:
                                logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"],
                                               use_cache=False).logits  # fmt: skip
                            loss = _masked_loss_sum(logits, b["labels"])
                            if not real:
                                loss = loss * 0.0  # a process without examples still joins the all-reduce
                            # Gradients are averaged over processes: × processes makes them the global sum.
                            cluster.backward(loss * (cluster.processes / max(1, trained)))
                        loss_sum += float(loss.detach())
                        if real:
                            window_tokens += int(b["attention_mask"].sum())
                    if c.grad_clip > 0:
                        cluster.clip(model, c.grad_clip)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    loss_sum, window_tokens, stopping = cluster.sum(loss_sum, window_tokens, float(stop.requested))
                    step_loss = loss_sum / max(1, trained)
                    result.losses.append(step_loss)
                    now = time.perf_counter()
                    result.tokens += int(window_tokens)
                    tps = window_tokens / max(1e-9, now - window_start)
                    window_tokens, window_start = 0, now
                    progress.update(step, step_loss, tps)
                    if step % c.log_every == 0 and not c.progress:
                        self.log(f"step {step}/{total} loss {step_loss:.4f} lr {lr:.2e} {tps:,.0f} tok/s")
                    if on_step is not None:
                        on_step(step, step_loss)
                    if eval_set is not None and (step % c.eval_every == 0 or step == total):
                        eval_loss = self.evaluate(model, eval_set, pad_id, device, autocast,
                                                  c.batch_size, c.eval_batches, cluster)  # fmt: skip
                        result.eval_losses.append((step, eval_loss))
                        progress.print(f"step {step}: train loss {step_loss:.4f}, eval loss {eval_loss:.4f}")
                    if stopping or (stop.requested and cluster.processes == 1):
                        result.interrupted = True
                        break
                    if step % c.save_every == 0 and step < total:
                        save(model, step, epoch, position, result)
        except KeyboardInterrupt:
            result.interrupted = True  # a second Ctrl+C: the last saved checkpoint stands
            raise
        result.steps = step
        result.elapsed_s = time.perf_counter() - started
        result.dropped = max(result.dropped, train_set.dropped_so_far)
        if result.dropped:
            self.log(f"dropped {result.dropped} example(s) longer than --max-length {c.max_length}")
        save(model, step, epoch, position, result)
        if result.interrupted:
            self.log(
                f"interrupted at step {step}/{total}; checkpoint saved in {self.checkpoint_dir} "
                "(continue with --resume)"
            )
            cluster.close()
            return result
        self.save_final(cluster, model, tokenizer, base_dtype, prepared_tokens)
        cluster.close()
        return result

    def _repartition(self, state: dict[str, Any], position: int, epoch: int, processes: int,
                     global_batch: int) -> int:  # fmt: skip
        """The batch to resume at when the global batch differs from the checkpoint's (another process
        count or --batch-size); says what it does."""
        saved_processes = int(state.get("processes", 1))
        saved_global = int(state.get("global_batch", state["config"]["batch_size"] * saved_processes))
        if saved_global == global_batch:
            if saved_processes != processes:
                self.log(
                    f"resuming a run of {saved_processes} process(es) on {processes}: the global batch stays "
                    f"{global_batch} examples, so the run continues exactly as it would have"
                )
            return position
        seen = position * saved_global
        new_position = seen // global_batch
        exact = f"--batch-size {saved_global // processes}" if saved_global % processes == 0 else None
        self.log(
            f"resuming a run of {saved_processes} process(es) × batch {saved_global // saved_processes} on "
            f"{processes} × {global_batch // processes}: the global batch changes from {saved_global} to "
            f"{global_batch} examples, so the rest of epoch {epoch} is cut anew and resumes after about "
            f"{seen} examples (some may repeat or be skipped; the learning-rate schedule goes on by step)"
            + (f"; for an exact continuation pass {exact}" if exact else "")
        )
        return new_position

    @staticmethod
    def evaluate(model: Any, dataset: JsonlDataset, pad_id: int, device: Any, autocast: Any,
                 batch_size: int = 8, max_batches: int | None = None,
                 cluster: Cluster | None = None) -> float:  # fmt: skip
        """Mean loss per trained token over ``dataset`` (in file order); with several processes each
        takes every n-th batch and the sums are added up. Sharded weights (FSDP) need every process in
        every forward: there each process runs them all."""
        import torch

        rank, processes = (cluster.rank, cluster.processes) if cluster else (0, 1)
        split = cluster is not None and processes > 1 and not cluster.sharded
        if not split:
            rank, processes = 0, 1
        elif cluster is not None:
            model = cluster.unwrap(model)  # no DDP wrapper: uneven batch counts need no collective
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

        index = 0
        for example in dataset:
            pending.append(example)
            if len(pending) == batch_size:
                if index % processes == rank:
                    run(pending)
                pending, index = [], index + 1
                if max_batches is not None and index >= max_batches:
                    break
        if pending and index % processes == rank:
            run(pending)
        if split and cluster is not None:
            total, count = cluster.sum(total, count)
        model.train()
        return total / max(1, count)

    # -- saving -------------------------------------------------------------------------------------

    def save_checkpoint(self, cluster: Cluster, tokenizer: Any, optimizer: Any, model: Any, step: int,
                        epoch: int, position: int, result: TrainResult, *, base_dtype: str | None,
                        prepared_tokens: list[str]) -> None:  # fmt: skip
        """Write ``OUT/checkpoint`` atomically (a temp dir renamed over the old one), from the main
        process; every process calls it (gathering sharded weights is collective)."""
        import torch
        from safetensors.torch import save_file

        full = cluster.full_state_dict(model)
        if cluster.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            tmp = self.out / (CHECKPOINT_DIR + ".tmp")
            if tmp.exists():
                shutil.rmtree(tmp)
            _save_weights(cluster.unwrap(model), tmp, full)
            save_tokenizer(tokenizer, tmp)
            write_added_tokens(tmp, prepared_tokens)
            meta: dict[str, Any] = {}
            if not cluster.sharded:  # sharded optimizer state would need the same process count back
                tensors, meta = _optimizer_tensors(optimizer)
                save_file(tensors, tmp / OPTIMIZER_FILE)
            state = {
                "format": FORMAT,
                "step": step,
                "epoch": epoch,
                "position": position,
                "processes": cluster.processes,
                "global_batch": self.config.batch_size * cluster.processes,
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
        cluster.barrier()

    def save_final(self, cluster: Cluster, model: Any, tokenizer: Any, base_dtype: str | None,
                   prepared_tokens: list[str]) -> None:  # fmt: skip
        """The trained model in ``OUT`` itself, ready for ``reasonchat chat --model OUT``; with LoRA
        the adapter there and, with ``--merge``, the merged model in ``OUT/merged``."""
        import copy

        import torch

        wanted = self.config.save_dtype
        name = DTYPE_SPELLINGS.get(wanted, "?") if wanted != "auto" else base_dtype
        if name == "?":
            raise UserError(f"unknown --save-dtype {wanted!r}")
        dtype = getattr(torch, name) if name and name != "float32" else None
        full = cluster.full_state_dict(model)
        if cluster.is_main:
            final = cluster.unwrap(model)
            if self.config.lora:
                from reasonchat.training import lora

                _save_weights(final, self.out, full)
                if self.config.merge:
                    merged = self.out / lora.MERGED_DIR
                    lora.save_merged(final, merged, dtype)
                    save_tokenizer(tokenizer, merged)
                    write_added_tokens(merged, prepared_tokens)
            else:
                if dtype is not None:
                    final = copy.deepcopy(final).to(dtype)
                    full = {k: v.to(dtype) for k, v in full.items()} if full else None
                final.config.use_cache = True
                _save_weights(final, self.out, full)
                model_config = cluster.unwrap(model).config
                model_config.use_cache = False
            save_tokenizer(tokenizer, self.out)
            write_added_tokens(self.out, prepared_tokens)
        cluster.barrier()


def _checkpoint_activations(model: Any) -> None:
    # Non-reentrant: it needs no input that requires grad (a frozen LoRA base has none) and is what
    # torch recommends; transformers 5.24 renamed the method.
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def _silent(message: str) -> None:
    pass


def _share(batch: list[Example], rank: int, processes: int) -> tuple[list[Example], bool]:
    """This process's examples of a global batch, and whether it has any (else it runs the first one
    with its loss zeroed, so it still joins the gradient all-reduce)."""
    mine = batch[rank::processes]
    return (mine, True) if mine else (batch[:1], False)


def _save_weights(model: Any, out: Path, state_dict: dict[str, Any] | None) -> None:
    if state_dict is None:
        model.save_pretrained(out)
    else:
        model.save_pretrained(out, state_dict=state_dict)


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
