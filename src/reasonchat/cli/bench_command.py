"""``reasonchat bench``: the engine against the card's naive loop, or a served model over HTTP (see
``reasonchat.bench``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from reasonchat.cli.model_options import add_model_arguments, open_backend
from reasonchat.cli.openai_options import add_backend_arguments, open_openai_backend, selected_backend
from reasonchat.cli.output import write_json
from reasonchat.errors import UserError
from reasonchat.settings import check_flag, out_of_bounds
from reasonchat.vote import MAX_SAMPLES


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if values == [0]:
        return []  # decode test only
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    for value in values:
        if problem := out_of_bounds("history_tokens", value):
            raise argparse.ArgumentTypeError(f"a history length {problem} (0 alone: none)")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure the engine against the model card's loop",
        description="Stage-2 and next-turn time to first token (naive loop vs KV-cache reuse) at each "
        "history length, re-answer and think-more with the cache vs cold, and decode tokens/s of bare "
        "generate vs the engine's stream.",
    )
    parser.add_argument(
        "--history-tokens",
        type=_int_list,
        default=[1000, 4000, 8000],
        metavar="N,N,...",
        help="history lengths to measure (default 1000,4000,8000; 0 skips them)",
    )
    parser.add_argument("--decode-tokens", type=int, default=128, metavar="N", help="0 skips the decode test")
    parser.add_argument("--stage-tokens", type=int, default=32, metavar="N", help="tokens generated per stage")
    parser.add_argument(
        "--steering-tokens",
        type=int,
        default=2000,
        metavar="N",
        help="the reasoning's length for the cost of re-answering and thinking more, at the longest "
        "history (default 2000; 0 skips it)",
    )
    parser.add_argument(
        "--fast-history-tokens",
        type=int,
        default=8000,
        metavar="N",
        help="eager vs fast decoding: the history for stage-2 time to first token with reuse "
        "(default 8000; 0 skips it; --no-compile skips the whole comparison)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=4,
        metavar="N",
        help="think N times: N sampled reasonings in one batch against N one after another"
        " (default 4; 0 skips it)",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    add_model_arguments(parser)
    add_backend_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from reasonchat.bench.local import run_bench

    for key in ("decode_tokens", "stage_tokens", "steering_tokens"):
        check_flag(key, getattr(args, key))
    if not 0 <= args.samples <= MAX_SAMPLES:
        raise UserError(f"--samples must be from 0 to {MAX_SAMPLES}")
    if args.fast_history_tokens and (problem := out_of_bounds("history_tokens", args.fast_history_tokens)):
        raise UserError(f"--fast-history-tokens {problem} (0: none)")
    if selected_backend(args) == "openai":
        return run_openai(args)
    if args.no_cache_reuse:
        raise UserError("bench compares against the naive loop itself; drop --no-cache-reuse")
    from reasonchat.engine.transformers_backend import TransformersBackend

    err = Console(stderr=True, highlight=False)
    progress = lambda m: err.print(f"[dim]{m}…[/dim]")  # noqa: E731
    # The card's loop and the engine's figures are eager ones; the fast path is measured beside them
    # on the same loaded model, unless --no-compile.
    backend = open_backend(args, progress=progress, compile=False)
    fast = None if args.compile is False else TransformersBackend(backend.loaded, fast=True, progress=progress)
    result = run_bench(
        backend,
        args.history_tokens,
        steering_tokens=args.steering_tokens,
        fast_backend=fast,
        fast_history_tokens=args.fast_history_tokens,
        samples=args.samples,
        **_options(args, err),
    )
    return _output(args, result.to_json(), lambda: print_tables(result))


def run_openai(args: argparse.Namespace) -> int:
    """Over HTTP there is no naive loop to compare with: stage-2 and next-turn TTFT, decode tokens/s."""
    from rich.console import Console

    from reasonchat.bench.served import run_http_bench

    err = Console(stderr=True, highlight=False)
    backend = open_openai_backend(args, progress=lambda m: err.print(f"[dim]{m}…[/dim]"))
    try:
        result = run_http_bench(backend, args.history_tokens, **_options(args, err))
    finally:
        backend.close()
    return _output(args, result.to_json(), lambda: print("\n".join(result.lines())))


def _options(args: argparse.Namespace, err: Any) -> dict[str, Any]:
    """What both benchmarks take from the command line; their progress lines go to ``err``."""
    return {
        "decode_tokens": args.decode_tokens,
        "stage_tokens": args.stage_tokens,
        "report": lambda m: err.print(f"[dim]{m}[/dim]"),
    }


def _output(args: argparse.Namespace, data: dict[str, Any], show: Callable[[], None]) -> int:
    if args.json:
        write_json(data)
    else:
        show()
    return 0


def print_tables(result) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    machine = result.machine
    console.print(f"model: {result.model}")
    console.print(", ".join(f"{k} {v}" for k, v in machine.items()))
    table = Table(title="Time to first token: card loop vs engine")
    for column in (
        "history", "s2 prompt", "cached", "naive s2", "engine s2", "×",
        "naive next", "engine next", "×",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for h in result.history:
        table.add_row(
            f"{h.history_tokens:,}",
            f"{h.stage2_prompt_tokens:,}",
            f"{h.stage2_cached_fraction:.1%}",
            f"{h.naive_stage2_ttft_s:.3f}s",
            f"{h.engine_stage2_ttft_s:.3f}s",
            f"{h.stage2_speedup:.1f}×",
            f"{h.naive_next_turn_ttft_s:.3f}s",
            f"{h.engine_next_turn_ttft_s:.3f}s",
            f"{h.next_turn_speedup:.1f}×",
        )
    console.print(table)
    if result.steering:
        steering = Table(title="Steering: with the cache vs a cold re-prefill (time to first token)")
        for column in ("history + reasoning", "re-answer prefilled", "cached", "cold", "think-more prefilled",
                       "cached", "cold"):  # fmt: skip
            steering.add_column(column, justify="right")
        for s in result.steering:
            steering.add_row(
                f"{s.history_tokens:,} + {s.reasoning_tokens:,}",
                f"{s.reanswer_prefilled_fraction:.1%} of {s.reanswer_prompt_tokens:,}",
                f"{s.reanswer_ttft_s:.3f}s",
                f"{s.cold_reanswer_ttft_s:.3f}s",
                f"{s.think_more_prefilled_tokens:,} of {s.think_more_prompt_tokens:,}",
                f"{s.think_more_ttft_s:.3f}s",
                f"{s.cold_think_more_ttft_s:.3f}s",
            )
        console.print(steering)
    if result.decode:
        d = result.decode
        console.print(
            f"decode ({d.tokens} tokens, median of 3): bare generate {d.bare_tokens_per_s:.1f} tok/s, "
            f"engine stream {d.engine_tokens_per_s:.1f} tok/s, ratio {d.ratio:.3f}"
        )
    if result.fast_path:
        print_fast_path(console, result.fast_path)
    if result.sampling:
        s = result.sampling
        console.print(
            f"think {s.samples} times ({s.tokens} tokens each): one after another {s.sequential_s:.2f} s,"
            f" in one batch {s.batch_s:.2f} s, {s.speedup:.2f}× faster"
        )
    targets = Table(title="Targets")
    for column in ("target", "measured", "wanted", "met"):
        targets.add_column(column)
    for name, measured, wanted, met in result.targets():
        targets.add_row(name, f"{measured:.3f}", wanted, "yes" if met else "NO")
    console.print(targets)


def print_fast_path(console, f) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    console.print(
        f"weights read per token {f.weight_bytes_per_token / 1e6:,.1f} MB, measured read bandwidth "
        f"{f.read_bandwidth_bytes_per_s / 1e9:,.1f} GB/s: bound {f.bound_tokens_per_s:,.1f} tok/s"
    )
    if f.notice:
        console.print(f"fast path: {f.notice}")
    table = Table(title=f"Decode paths, same model, interleaved rounds ({f.tokens} tokens, median of 3)")
    at = f"{f.stage2_history_tokens:,}"
    for column in ("path", "decode tok/s", "of bound", "warm-up", f"stage-2 TTFT at {at}", f"decode tok/s at {at}"):
        table.add_column(column, justify="right")
    rows = [("eager", f.eager)] + ([("fast", f.fast)] if f.fast else [])
    for name, p in rows:
        ttft = f"{p.stage2_ttft_s:.3f}s" if p.stage2_ttft_s is not None else "—"
        long = f"{p.long_decode_tokens_per_s:.1f}" if p.long_decode_tokens_per_s is not None else "—"
        table.add_row(
            name, f"{p.decode_tokens_per_s:.1f}", f"{p.bound_fraction:.0%}", f"{p.warmup_s:.1f}s", ttft, long
        )
    console.print(table)
    if f.ratio is not None:
        same = f"{f.identical_token_share:.1%}" if f.identical_token_share is not None else "—"
        console.print(
            f"fast / eager decode {f.ratio:.2f}×; recompiles after the warm-up {f.recompiles}; "
            f"identical greedy tokens {same}; stage-2 prompt {f.stage2_prompt_tokens:,}, "
            f"{f.stage2_cached_tokens:,} from cache"
        )
