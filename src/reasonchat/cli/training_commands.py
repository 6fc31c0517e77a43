"""``prepare-model``, ``train`` and ``demo-model build|path|eval``.

torch and transformers are imported inside the handlers only: ``reasonchat --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from reasonchat.cli.model_options import add_trust_remote_code
from reasonchat.settings import DTYPE_NAMES, check_flag


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_prepare(subparsers)
    _register_train(subparsers)
    _register_demo(subparsers)


# -- prepare-model ---------------------------------------------------------------------------------


def _register_prepare(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare-model",
        help="add <|reasoning|> to a base checkpoint",
        description=(
            "Add <|reasoning|> as a special token, grow the embeddings for it (mean-initialised, never "
            "shrunk), stop generation on <|im_end|> and <|endoftext|>, and save as safetensors. "
            "Running it on a prepared model changes nothing."
        ),
    )
    parser.add_argument("base", metavar="BASE", help="base checkpoint directory (or hub id, from the cache)")
    parser.add_argument("out", metavar="OUT", help="output directory")
    parser.add_argument("--gguf-file", metavar="FILE", help="load BASE/FILE, a GGUF checkpoint")
    parser.add_argument(
        "--add-chatml", action="store_true", help="also add <|im_start|>/<|im_end|> if the tokenizer lacks them"
    )
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default="auto", help="dtype to save (default: as loaded)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_trust_remote_code(parser)
    parser.set_defaults(func=_run_prepare)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _run_prepare(args: argparse.Namespace) -> int:
    from reasonchat.training.prepare import prepare_model

    _quiet_transformers()
    report = prepare_model(
        args.base,
        args.out,
        gguf_file=args.gguf_file,
        add_chatml=args.add_chatml,
        overwrite=args.overwrite,
        save_dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        log=lambda message: print(message, file=sys.stderr),
    )
    print(report.summary())
    return 0


# -- train -------------------------------------------------------------------------------------------


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    from reasonchat.training.trainer import TrainConfig

    d = TrainConfig(model="", data="", out="")
    parser = subparsers.add_parser(
        "train",
        help="fine-tune with the loss on reasoning and answer",
        description=(
            "Fine-tune a prepared model on JSONL conversations (ours, or the HF/TRL 'messages' format with "
            "reasoning_content, reasoning or <think> on assistant messages) with the loss on the reasoning "
            "and assistant turns only: the whole model, or LoRA adapters with --lora. Ctrl+C saves a "
            "checkpoint; --resume continues from it. Runs unchanged under accelerate launch (DDP, FSDP)."
        ),
    )
    parser.add_argument("--model", required=True, metavar="DIR", help="a model made by prepare-model")
    parser.add_argument("--data", required=True, metavar="FILE",
                        help="training conversations (JSONL; see docs/training.md for the formats)")  # fmt: skip
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
    parser.add_argument("--eval-data", metavar="FILE", help="conversations for the periodic eval loss")
    group = parser.add_argument_group("schedule")
    group.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (default: --epochs)")
    group.add_argument("--epochs", type=float, default=d.epochs, help=f"passes over the data (default {d.epochs})")
    group.add_argument("--batch-size", type=int, default=d.batch_size,
                       help=f"examples per batch and process (default {d.batch_size})")  # fmt: skip
    group.add_argument("--grad-accum", type=int, default=d.grad_accum, metavar="N",
                       help=f"batches per optimizer step (default {d.grad_accum})")  # fmt: skip
    group.add_argument("--max-length", type=int, default=d.max_length, metavar="N",
                       help=f"drop (and count) longer examples (default {d.max_length})")  # fmt: skip
    group.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr})")
    group.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio,
                       help=f"the cosine ends at lr × this (default {d.min_lr_ratio})")  # fmt: skip
    group.add_argument("--warmup-steps", type=int, default=d.warmup_steps, metavar="N",
                       help=f"default {d.warmup_steps}")  # fmt: skip
    group.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
    group.add_argument("--grad-clip", type=float, default=d.grad_clip, help=f"default {d.grad_clip}; 0 = off")
    group.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
    group = parser.add_argument_group("checkpoints and output")
    group.add_argument("--eval-every", type=int, default=d.eval_every, metavar="N", help=f"default {d.eval_every}")
    group.add_argument("--eval-batches", type=int, metavar="N", help="cap the eval (default: the whole file)")
    group.add_argument("--save-every", type=int, default=d.save_every, metavar="N", help=f"default {d.save_every}")
    group.add_argument("--save-dtype", choices=DTYPE_NAMES, default="auto",
                       help="dtype of the final model (default: the base model's)")  # fmt: skip
    group.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    group.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    group.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    group = parser.add_argument_group("LoRA (needs peft)")
    group.add_argument("--lora", type=int, metavar="R",
                       help="train rank-R adapters on the attention and MLP projections, and the rows of the "
                            "tokens prepare-model added, instead of the whole model; OUT is an adapter")  # fmt: skip
    group.add_argument("--lora-alpha", type=float, metavar="A", help="LoRA scale numerator (default 2 × R)")
    group.add_argument("--lora-targets", nargs="+", metavar="MODULE",
                       help="module names to adapt (default: every linear layer but the output head)")  # fmt: skip
    group.add_argument("--merge", action="store_true", help="also write base + adapter as one model in OUT/merged")
    group = parser.add_argument_group("hardware")
    group.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    group.add_argument("--threads", type=int, metavar="N",
                       help="torch CPU threads (1 is best for tiny models on shared cores)")  # fmt: skip
    group.add_argument("--processes", type=int, metavar="N",
                       help="data-parallel over N processes (DDP; one per GPU, or gloo on CPU): a shortcut for "
                            "torchrun; for FSDP use `accelerate launch --config_file ... -m reasonchat train`")  # fmt: skip
    group.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute activations in the backward pass: less memory, ~30 %% more time")  # fmt: skip
    add_trust_remote_code(parser)
    parser.set_defaults(func=_run_train, train_parser=parser)


def _relaunch_argv(args: argparse.Namespace) -> list[str]:
    """The same ``train`` command line, rebuilt from the parsed flags, less ``--processes``."""
    argv = ["train"]
    for action in args.train_parser._actions:
        if not action.option_strings or action.dest in ("help", "processes"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == action.default:
            continue
        flag = action.option_strings[-1]
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def _launch_processes(args: argparse.Namespace) -> int:
    """``train --processes N``: the same command under torchrun, which accelerate picks up."""
    import subprocess

    from reasonchat.errors import UserError
    from reasonchat.training.distributed import launched_processes

    if not 1 <= args.processes <= 1024:
        raise UserError(f"--processes must be from 1 to 1024, got {args.processes}")
    if launched_processes() > 1:
        raise UserError("--processes inside a launched run: use either --processes or accelerate launch")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.processes}", "-m", "reasonchat", *_relaunch_argv(args)]  # fmt: skip
    print(f"starting {args.processes} processes: {' '.join(command[1:])}", file=sys.stderr)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130


def _run_train(args: argparse.Namespace) -> int:
    from reasonchat.training.trainer import TrainConfig, train

    if args.processes is not None and args.processes != 1:
        return _launch_processes(args)
    _quiet_transformers()
    config = TrainConfig(
        model=args.model,
        data=args.data,
        out=args.out,
        eval_data=args.eval_data,
        max_length=args.max_length,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        max_steps=args.max_steps,
        epochs=args.epochs,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        seed=args.seed,
        eval_every=args.eval_every,
        eval_batches=args.eval_batches,
        save_every=args.save_every,
        threads=args.threads,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        save_dtype=args.save_dtype,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
        lora=args.lora,
        lora_alpha=args.lora_alpha,
        lora_targets=args.lora_targets,
        merge=args.merge,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    result = train(config, log=lambda message: print(message, file=sys.stderr))
    from reasonchat.training.distributed import launched_processes

    if launched_processes() > 1 and int(os.environ.get("RANK", "0")) != 0:
        return 130 if result.interrupted else 0  # the main process reports
    if result.interrupted:
        raise KeyboardInterrupt
    last = f", eval loss {result.eval_losses[-1][1]:.4f}" if result.eval_losses else ""
    print(
        f"trained {result.steps} steps in {result.elapsed_s:.0f}s: loss {result.losses[0]:.4f} -> "
        f"{result.losses[-1]:.4f}{last}; model saved to {result.out}"
    )
    return 0


# -- demo-model ------------------------------------------------------------------------------------


def _register_demo(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo-model",
        help="build, locate or evaluate the embedded demo model",
        description="The tiny arithmetic model reasonchat uses when no --model is given.",
    )
    actions = parser.add_subparsers(dest="demo_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: _demo_usage(parser))

    build = actions.add_parser(
        "build",
        help="train it from scratch (about 12 minutes of CPU, one thread)",
        description="Train the demo model from scratch with prepare-model and train (seeded).",
    )
    build.add_argument("--out", default="demo-model", metavar="DIR", help="output directory (default ./demo-model)")
    build.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    build.add_argument("--steps", type=int, metavar="N", help="training steps (default: the shipped model's)")
    build.add_argument("--seed", type=int, help="default: the shipped model's")
    build.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1)")
    build.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    build.set_defaults(func=_run_build)

    path = actions.add_parser("path", help="print the directory of the shipped demo model")
    path.set_defaults(func=_run_path)

    evaluate = actions.add_parser(
        "eval",
        help="benchmark: held-out problems through the real two-stage inference",
        description=(
            "Run held-out addition/subtraction dialogs through the engine (reasoning, then answer), "
            "turn after turn, and print exact-answer and clean-stop rates per turn. "
            "Exit status 1 if below the bar (exact >= 98 %, clean stops >= 99.5 %)."
        ),
    )
    evaluate.add_argument("--model", metavar="DIR", help="default: the shipped demo model")
    evaluate.add_argument("--dialogs", type=int, default=500, metavar="N", help="default 500")
    evaluate.add_argument("--turns", type=int, default=3, metavar="N", help="questions per dialog (default 3)")
    evaluate.add_argument("--off-task", type=int, default=50, metavar="N", help="greetings etc. (default 50)")
    evaluate.add_argument("--seed", type=int, help="problem seed (default: the benchmark's)")
    evaluate.add_argument("--threads", type=int, default=1, metavar="N", help="torch CPU threads (default 1)")
    evaluate.add_argument("--show-failures", type=int, default=5, metavar="N", help="per row (default 5)")
    add_trust_remote_code(evaluate)
    evaluate.set_defaults(func=_run_eval)


def _demo_usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run_build(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from reasonchat.training.demo import DemoSettings, build_demo_model

    _quiet_transformers()
    settings = DemoSettings()
    changes: dict[str, Any] = {"threads": args.threads}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.seed is not None:
        changes["seed"] = args.seed
    for key in ("threads", "steps", "seed"):
        check_flag(key, getattr(args, key))
    report = build_demo_model(
        args.out,
        replace(settings, **changes),
        overwrite=args.overwrite,
        progress=not args.no_progress and sys.stderr.isatty(),
        log=lambda message: print(message, file=sys.stderr),
    )
    print(report.summary())
    return 0


def _run_path(args: argparse.Namespace) -> int:
    from reasonchat.demo_model import model_dir

    print(model_dir())
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from rich.console import Console

    from reasonchat.demo_model import model_dir
    from reasonchat.sanitize import sanitize
    from reasonchat.training.demo import EVAL_SEED, evaluate_demo_model

    for key in ("dialogs", "turns", "off_task", "threads", "seed", "show_failures"):
        check_flag(key, getattr(args, key))
    _quiet_transformers()
    model = args.model or str(model_dir())
    console = Console(stderr=True)
    with console.status("") as status:

        def on_dialog(done: int, total: int) -> None:
            status.update(f"dialog {done}/{total}")

        report = evaluate_demo_model(
            model,
            dialogs=args.dialogs,
            turns=args.turns,
            off_task=args.off_task,
            threads=args.threads,
            seed=EVAL_SEED if args.seed is None else args.seed,
            on_dialog=on_dialog,
            trust_remote_code=args.trust_remote_code,
        )
    out = Console()
    out.print(report.table())
    for name, score in report.rows.items():
        for question, expected, answer in score.failures[: args.show_failures]:
            out.print(f"  {name}: {sanitize(question)!r} expected {expected!r}, got {sanitize(answer)!r}",
                      markup=False, highlight=False)  # fmt: skip
    passed = report.passed()
    out.print("PASS (exact >= 98 %, clean stops >= 99.5 % at every turn)" if passed else "BELOW THE BAR")
    return 0 if passed else 1
