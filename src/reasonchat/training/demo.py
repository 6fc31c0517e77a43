"""The embedded demo model: a seeded synthetic task, its tokenizer, the build, and the benchmark.

The task is addition and subtraction of whole numbers of up to 4 digits, asked in everyday phrasings,
inside dialogs of one to four questions. The reasoning restates the problem, works it column by column
(one line per column, carrying the partial result), and states the result; the answer is
``A + B = C`` / ``A - B = C``. Greetings and anything else get a one-line reasoning and a fixed, polite
answer saying what the demo can do.

``build_demo_model`` goes through the same code as a user would: a byte-level BPE tokenizer with the
ChatML tokens and a tiny random Qwen2 are saved as a *base* checkpoint, ``prepare_model`` adds
``<|reasoning|>``, the dialogs are written as JSONL and ``train`` fine-tunes on them.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reasonchat.template import (
    ASSISTANT_ROLE,
    DEFAULT_SYSTEM_PROMPT,
    END_OF_TEXT,
    IM_END,
    IM_START,
    REASONING_ROLE,
    SYSTEM_ROLE,
    USER_ROLE,
)

# --------------------------------------------------------------------------------------------------
# The task
# --------------------------------------------------------------------------------------------------

MAX_DIGITS = 4
PLACES = ("ones", "tens", "hundreds", "thousands")

OFF_TASK_REASONING = "Not an addition or subtraction of whole numbers up to 4 digits."
OFF_TASK_ANSWER = (
    "Hi! I am a tiny demo model: I can only add and subtract whole numbers of up to 4 digits. "
    'Try "What is 12 + 7?"'
)

ADD_PHRASINGS = (
    "What is {a} + {b}?",
    "what is {a}+{b}?",
    "What's {a} + {b}?",
    "{a}+{b}",
    "{a} + {b}",
    "{a} + {b} = ?",
    "{a} + {b}?",
    "{a}+{b}=",
    "what's {a} plus {b}",
    "What is {a} plus {b}?",
    "{a} plus {b}",
    "Add {a} and {b}.",
    "add {a} and {b}",
    "Add {a} to {b}.",
    "What is the sum of {a} and {b}?",
    "sum of {a} and {b}",
    "Calculate {a} + {b}.",
    "How much is {a} + {b}?",
    "Compute {a}+{b}",
    "Please add {a} and {b}.",
    "Can you add {a} and {b}?",
)
SUB_PHRASINGS = (
    "What is {a} - {b}?",
    "what is {a}-{b}?",
    "What's {a} - {b}?",
    "{a}-{b}",
    "{a} - {b}",
    "{a} - {b} = ?",
    "{a} - {b}?",
    "{a}-{b}=",
    "what's {a} minus {b}",
    "What is {a} minus {b}?",
    "{a} minus {b}",
    "Subtract {b} from {a}.",
    "subtract {b} from {a}",
    "Take {b} away from {a}.",
    "What is {a} take away {b}?",
    "Calculate {a} - {b}.",
    "How much is {a} - {b}?",
    "Compute {a}-{b}",
    "What is the difference between {a} and {b}?",
    "Please subtract {b} from {a}.",
    "Can you subtract {b} from {a}?",
)
GREETINGS = (
    "hi", "hello", "hey", "Hi!", "Hello!", "Hello there", "hey there", "good morning",
    "Good evening!", "yo", "howdy", "hi there!", "Greetings.", "hiya", "Hey, how's it going?",
    "good afternoon", "Hello, anyone there?", "sup",
)  # fmt: skip
CHITCHAT = (
    "How are you?", "who are you?", "What can you do?", "what is your name?", "thanks", "Thank you!",
    "thank you so much", "tell me a joke", "What's the weather like?", "help", "?", "ok", "bye",
    "Can you write a poem?", "What is the capital of France?", "explain quantum physics",
    "I love you", "你好", "こんにちは", "What is love?", "Translate hello to French", "hmm", "test",
    "asdf", "why?", "are you a robot?", "can you code?", "write a python function", "what time is it?",
    "who made you?", "good night", "What is math?", "Tell me about yourself.", "Are you smart?",
    "cool", "nice", "lol", "What day is it today?", "Do you like numbers?", "Can you multiply?",
    "Solve x + 2 = 5", "what is pi?", "Count to ten.", "1 2 3 4", "What is 12?", "7", "+",
    "Summarize this text for me.", "How old are you?", "Where do you live?", "¿Qué tal?", "Merci!",
)  # fmt: skip
UNSUPPORTED = (
    "What is {a} * {b}?", "{a} * {b}", "{a} x {b}", "{a} / {b}", "What is {a} times {b}?",
    "Divide {a} by {b}.", "multiply {a} and {b}", "What is {a} to the power of {b}?",
    "{a}^{b}", "What is {big} + {b}?", "{big} - {b}", "{a} + {big}", "What is {a}.{d} + {b}?",
    "{a}.{d} - {b}", "What is -{a} + {b}?", "-{a} - {b}", "square root of {a}", "{a} % {b}",
    "What is {a} + {b} + {c}?", "{a} - {b} - {c}",
)  # fmt: skip
WORDS = (
    "the", "cat", "number", "apple", "run", "blue", "house", "computer", "model", "please", "why",
    "sum", "add", "minus", "plus", "yesterday", "music", "code", "river", "happy", "tree", "what",
    "is", "a", "and", "of", "to", "in", "you", "it", "green", "window", "coffee", "train", "world",
)  # fmt: skip
OTHER_SYSTEM_PROMPTS = (
    "You are a math tutor.", "Be concise.", "You are a helpful assistant.", "Answer briefly.",
    "You are a calculator.", "You are a friendly bot",
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    a: int
    op: str  # "+" or "-"
    b: int

    @property
    def result(self) -> int:
        return self.a + self.b if self.op == "+" else self.a - self.b

    @property
    def statement(self) -> str:
        return f"{self.a} {self.op} {self.b}"

    @property
    def answer(self) -> str:
        return f"{self.statement} = {self.result}"


def is_held_out(problem: Problem) -> bool:
    """About 2 % of all problems are never trained on: the benchmark draws from those alone."""
    return zlib.crc32(problem.statement.encode()) % 50 == 0


def _column_digits(n: int, width: int) -> list[int]:
    return [(n // 10**i) % 10 for i in range(width)]


def addition_steps(a: int, b: int, width: int) -> list[str]:
    """One line per column, each carrying the partial result (``tens: 4+8=12, +1=13 -> 32``), so the
    result is copied, not assembled, at the end. A carried 1 is added as a step of its own (``8+8=16, +1=17``), so the
    model learns 100 digit sums and an increment rather than 200 three-term sums."""
    da, db = _column_digits(a, width), _column_digits(b, width)
    lines, partial, carry = [], "", 0
    for i in range(width):
        total = da[i] + db[i]
        expr = f"{da[i]}+{db[i]}={total}"
        if carry:
            total += 1
            expr += f", +1={total}"
        partial = str(total % 10) + partial
        lines.append(f"{PLACES[i]}: {expr} -> {partial}")
        carry = total // 10
    if carry:
        partial = "1" + partial
        lines.append(f"carry: 1 -> {partial}")
    return lines


def subtraction_steps(top: int, bottom: int, width: int) -> list[str]:
    """Columns of ``top - bottom`` (``top >= bottom``). A borrowed 1 is subtracted as a step of its
    own, and a column below zero borrows ten: ``tens: 4-9=-5, -1=-6, +10=4 -> 47``."""
    dt, db = _column_digits(top, width), _column_digits(bottom, width)
    lines, partial, borrow = [], "", 0
    for i in range(width):
        value = dt[i] - db[i]
        expr = f"{dt[i]}-{db[i]}={value}"
        if borrow:
            value -= 1
            expr += f", -1={value}"
        borrow = 1 if value < 0 else 0
        if borrow:
            value += 10
            expr += f", +10={value}"
        partial = str(value) + partial
        lines.append(f"{PLACES[i]}: {expr} -> {partial}")
    return lines


def comparison(a: int, b: int) -> str:
    """Which is larger, worked out as a tiny model can: digit counts, then the digits from the left
    subtracted until one difference is not zero (the column facts it knows already; the sign of the
    last difference decides): ``compare: 4 vs 4 digits, 5-5=0, 3-3=0, 2-1=1, so 5321 >= 5319``."""
    sa, sb = str(a), str(b)
    steps = [f"compare: {len(sa)} vs {len(sb)} digits"]
    if len(sa) == len(sb):
        for x, y in zip(sa, sb, strict=True):
            steps.append(f"{x}-{y}={int(x) - int(y)}")
            if x != y:
                break
    if a >= b:
        return ", ".join(steps) + f", so {a} >= {b}"
    return ", ".join(steps) + f", so {a} < {b}, so -({b} - {a})"


def reasoning_for(problem: Problem) -> str:
    """The worked solution: restate, compare (subtraction), one line per column, the result."""
    a, b = problem.a, problem.b
    lines = [problem.statement]
    if problem.op == "-":
        lines.append(comparison(a, b))
        if a < b:
            a, b = b, a
    width = max(len(str(a)), len(str(b)))
    lines += addition_steps(a, b, width) if problem.op == "+" else subtraction_steps(a, b, width)
    lines.append(f"result: {problem.result}")
    return "\n".join(lines)


def random_operand(rng: random.Random, digits: int | None = None) -> int:
    """Digit count uniform in 1..4, then a value uniform among numbers with that many digits."""
    digits = digits or rng.randint(1, MAX_DIGITS)
    low = 0 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(low, 10**digits - 1)


SUBTRACTION_SHARE = 0.5
EQUAL_LENGTH_SHARE = 0.25  # on top of the 1 in 4 that uniform digit counts give


def random_problem(rng: random.Random, held_out: bool = False,
                   subtraction: float = SUBTRACTION_SHARE) -> Problem:  # fmt: skip
    while True:
        op = "-" if rng.random() < subtraction else "+"
        a, b = random_operand(rng), random_operand(rng)
        roll = rng.random()
        if roll < EQUAL_LENGTH_SHARE:
            # more digit-by-digit comparisons, a third of them with equal leading digits
            b = random_operand(rng, digits=len(str(a)))
            if len(str(a)) > 1 and rng.random() < 1 / 3:
                keep = rng.randint(1, len(str(a)) - 1)
                b = int(str(a)[:keep] + str(b)[keep:])
        elif roll < EQUAL_LENGTH_SHARE + 0.03:
            b = a  # x - x = 0, x + x
        elif roll < EQUAL_LENGTH_SHARE + 0.06:
            a = 10 ** rng.randint(1, MAX_DIGITS) - 1  # 9, 99, 999, 9999: long carries
        problem = Problem(a, op, b)
        if is_held_out(problem) == held_out:
            return problem


def phrase(problem: Problem, rng: random.Random, bare: float = 0.06) -> str:
    """One of the phrasings; ``bare`` is the share without the final punctuation (a user's habit)."""
    templates = ADD_PHRASINGS if problem.op == "+" else SUB_PHRASINGS
    template = rng.choice(templates)
    # "Subtract {b} from {a}" names the operands in the canonical order already.
    text = template.format(a=problem.a, b=problem.b)
    roll = rng.random()
    if roll < 0.08:
        text = text.lower()
    elif roll < 0.08 + bare:
        text = text.rstrip(".?!")
    elif roll < 0.11 + bare:
        text = "  " + text + " "
    return text


def off_task_message(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(GREETINGS)
    if roll < 0.65:
        return rng.choice(CHITCHAT)
    if roll < 0.85:
        big = rng.randint(10_000, 999_999)
        return rng.choice(UNSUPPORTED).format(
            a=random_operand(rng), b=random_operand(rng), c=random_operand(rng), big=big,
            d=rng.randint(1, 99),
        )  # fmt: skip
    if roll < 0.95:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.!?"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))).strip() or "x"


@dataclass(frozen=True)
class TaskMix:
    off_task: float = 0.1  # share of turns that are greetings or off-task input
    turns: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)  # weights of dialogs with 1, 2, 3, 4 questions
    default_system: float = 0.85  # else no system prompt (10 %) or another one (5 %)


def random_dialog(rng: random.Random, mix: TaskMix = TaskMix(), held_out: bool = False) -> dict:
    """One training example: ``{"messages": [...]}`` with every turn's reasoning and answer."""
    roll = rng.random()
    messages: list[dict[str, str]] = []
    if roll < mix.default_system:
        messages.append({"role": SYSTEM_ROLE, "content": DEFAULT_SYSTEM_PROMPT})
    elif roll < mix.default_system + (1 - mix.default_system) * 2 / 3:
        pass
    else:
        messages.append({"role": SYSTEM_ROLE, "content": rng.choice(OTHER_SYSTEM_PROMPTS)})
    turns = rng.choices(range(1, len(mix.turns) + 1), weights=mix.turns)[0]
    for _ in range(turns):
        if rng.random() < mix.off_task:
            user, reasoning, answer = off_task_message(rng), OFF_TASK_REASONING, OFF_TASK_ANSWER
        else:
            problem = random_problem(rng, held_out)
            user, reasoning, answer = phrase(problem, rng), reasoning_for(problem), problem.answer
        messages += [
            {"role": USER_ROLE, "content": user},
            {"role": REASONING_ROLE, "content": reasoning},
            {"role": ASSISTANT_ROLE, "content": answer},
        ]
    return {"messages": messages}


# --------------------------------------------------------------------------------------------------
# The tokenizer
# --------------------------------------------------------------------------------------------------

TOKENIZER_VOCAB = 512  # byte-level BPE including <|endoftext|>, <|im_start|>, <|im_end|>
CHATML_TOKENS = (END_OF_TEXT, IM_START, IM_END)


def tokenizer_corpus(rng: random.Random, dialogs: int = 3000) -> Iterator[str]:
    """Texts to learn merges from: what the model will read and write, without the special tokens."""
    for _ in range(dialogs):
        for message in random_dialog(rng)["messages"]:
            yield f"{message['role']}\n{message['content']}\n"
    yield from GREETINGS
    yield from CHITCHAT


def train_tokenizer(corpus: Iterator[str], vocab_size: int = TOKENIZER_VOCAB) -> Any:
    """A byte-level BPE with Qwen2's exact pre-tokenizer, returned as a ``Qwen2Tokenizer``.

    transformers 5 builds a ``Qwen2Tokenizer`` for every ``qwen2`` checkpoint and sets the split rules
    itself, ignoring those in ``tokenizer.json``: a BPE trained with any other rules would load and encode
    differently than it was trained. So the merges are learnt with that very pre-tokenizer (digits
    split one by one, which suits column arithmetic) and then handed to ``Qwen2Tokenizer``.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(CHATML_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=state["vocab"], merges=merges)
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [IM_START, IM_END]}, replace_extra_special_tokens=False
    )
    tokenizer.model_max_length = 32768
    return tokenizer


def check_tokenizer_roundtrip(trained: Any, saved_dir: Path, texts: list[str]) -> None:
    """``AutoTokenizer.from_pretrained(saved_dir)`` must encode exactly as the tokenizer we trained."""
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(saved_dir, local_files_only=True, trust_remote_code=False)
    for text in texts:
        if trained(text)["input_ids"] != loaded(text)["input_ids"]:
            raise RuntimeError(f"the saved tokenizer encodes {text[:60]!r} differently than trained")
        if loaded.decode(loaded(text)["input_ids"]) != text:
            raise RuntimeError(f"the tokenizer does not round-trip {text[:60]!r}")


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------

WEIGHT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
)
BUILD_INFO = "build_info.json"


@dataclass
class DemoSettings:
    """Everything that determines the demo model (with the torch version, thread count and CPU ISA)."""

    seed: int = 77
    steps: int = 1200
    batch_size: int = 16
    lr: float = 3e-3
    warmup_steps: int = 40
    min_lr_ratio: float = 0.05
    weight_decay: float = 0.05
    hidden_size: int = 128
    intermediate_size: int = 384
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    tokenizer_vocab: int = TOKENIZER_VOCAB
    eval_dialogs: int = 64  # eval loss during training (held-out problems)
    eval_every: int = 200
    threads: int = 1
    mix: TaskMix = field(default_factory=TaskMix)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BuildReport:
    out: Path
    parameters: int
    seconds: float
    cpu_seconds: float  # below ``seconds`` when other processes took the cores
    stage_seconds: dict[str, float]
    final_loss: float
    eval_losses: list[tuple[int, float]]
    dropped: int

    def summary(self) -> str:
        eval_text = f", eval loss {self.eval_losses[-1][1]:.4f}" if self.eval_losses else ""
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in self.stage_seconds.items())
        return (
            f"demo model ({self.parameters:,} parameters) built in {self.seconds:.0f}s "
            f"(CPU time {self.cpu_seconds:.0f}s; {stages}); "
            f"final train loss {self.final_loss:.4f}{eval_text}; saved to {self.out}"
        )


def qwen2_config(settings: DemoSettings, tokenizer: Any) -> Any:
    from transformers import Qwen2Config

    end_of_text = tokenizer.convert_tokens_to_ids(END_OF_TEXT)
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=settings.hidden_size,
        intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads,
        num_key_value_heads=settings.kv_heads,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=end_of_text,
        pad_token_id=end_of_text,
    )


def build_demo_model(
    out: str | Path,
    settings: DemoSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    work_dir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> BuildReport:
    """Tokenizer → random base → ``prepare_model`` → JSONL → ``train``; the result copied to ``out``."""
    import shutil
    import tempfile

    import torch

    from reasonchat.template import apply_chat_template
    from reasonchat.training.data import write_jsonl
    from reasonchat.training.prepare import check_output_dir, prepare_model
    from reasonchat.training.trainer import TrainConfig, train

    settings = settings or DemoSettings()
    out = Path(out).expanduser()
    check_output_dir(out, overwrite)
    torch.set_num_threads(settings.threads)
    started, cpu_started = time.perf_counter(), time.process_time()
    stage_seconds: dict[str, float] = {}
    clock = [started]

    def lap(name: str) -> None:
        now = time.perf_counter()
        stage_seconds[name] = round(now - clock[0], 1)
        clock[0] = now

    with tempfile.TemporaryDirectory(prefix="reasonchat-demo-", dir=work_dir) as tmp:
        work = Path(tmp)
        log(f"training the tokenizer ({settings.tokenizer_vocab} tokens, Qwen2 split rules)")
        tokenizer = train_tokenizer(
            tokenizer_corpus(random.Random(f"tokenizer/{settings.seed}")), settings.tokenizer_vocab
        )
        base = work / "base"
        tokenizer.save_pretrained(base)
        probe_rng = random.Random(f"probe/{settings.seed}")
        probes = [apply_chat_template(random_dialog(probe_rng)["messages"], False) for _ in range(200)]
        check_tokenizer_roundtrip(tokenizer, base, probes + list(CHITCHAT) + list(GREETINGS))

        log("creating the random base model")
        torch.manual_seed(settings.seed)
        from transformers import Qwen2ForCausalLM

        model = Qwen2ForCausalLM(qwen2_config(settings, tokenizer))
        model.generation_config.do_sample = False  # greedy: the demo answers the same way every time
        model.save_pretrained(base)
        parameters = sum(p.numel() for p in model.parameters())
        del model
        lap("tokenizer+base")

        log("prepare-model: adding <|reasoning|>")
        prepared = work / "prepared"
        report = prepare_model(base, prepared, log=lambda m: None)
        log(report.summary())
        lap("prepare")

        log("writing the synthetic dialogs")
        rng = random.Random(f"train/{settings.seed}")
        train_file, eval_file = work / "train.jsonl", work / "eval.jsonl"
        dialogs = settings.steps * settings.batch_size
        write_jsonl(train_file, (random_dialog(rng, settings.mix) for _ in range(dialogs)))
        eval_rng = random.Random(f"eval-loss/{settings.seed}")
        write_jsonl(
            eval_file,
            (random_dialog(eval_rng, settings.mix, held_out=True) for _ in range(settings.eval_dialogs)),
        )
        lap("data")

        log(f"training {settings.steps} steps of {settings.batch_size} dialogs "
            f"({settings.threads} thread{'s' if settings.threads > 1 else ''})")  # fmt: skip
        trained = work / "trained"
        result = train(
            TrainConfig(
                model=str(prepared),
                data=str(train_file),
                eval_data=str(eval_file),
                out=str(trained),
                max_length=1024,
                batch_size=settings.batch_size,
                max_steps=settings.steps,
                lr=settings.lr,
                min_lr_ratio=settings.min_lr_ratio,
                warmup_steps=settings.warmup_steps,
                weight_decay=settings.weight_decay,
                seed=settings.seed,
                eval_every=settings.eval_every,
                save_every=10**9,
                shuffle_buffer=0,
                group_by_length=16,
                threads=settings.threads,
                device="cpu",
                save_dtype="bfloat16",
                progress=progress,
            ),
            log=log,
        )
        lap("train")

        staging = work / "final"
        staging.mkdir()
        for name in WEIGHT_FILES:
            shutil.copyfile(trained / name, staging / name)  # plain 0644-style files, as package data
        # Weights stored in bf16 (half the size, same answers: measured), run in fp32: on CPUs bf16
        # matmuls of this size are slower, and ``dtype="auto"`` follows the config's dtype.
        config_path = staging / "config.json"
        config = json.loads(config_path.read_text())
        config["dtype"] = "float32"
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        info = {
            "settings": settings.to_dict(),
            "parameters": parameters,
            "build_seconds": round(seconds, 1),
            "build_cpu_seconds": round(cpu_seconds, 1),
            "stage_seconds": stage_seconds,
            "final_train_loss": result.losses[-1],
            "eval_losses": result.eval_losses,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }
        (staging / BUILD_INFO).write_text(json.dumps(info, indent=1) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()  # check_output_dir left it empty
        shutil.copytree(staging, out)
    return BuildReport(out, parameters, seconds, cpu_seconds, stage_seconds, result.losses[-1],
                       result.eval_losses, result.dropped)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------

EVAL_SEED = 20_250_101  # disjoint from training: eval problems come from the held-out partition
# The benchmark asks as a new user does (issue 16): fewer subtractions than training's half, and a
# third of the questions without their final "?" or ".".
EVAL_SUBTRACTION_SHARE = 0.4
EVAL_BARE_SHARE = 0.33


@dataclass
class TurnScore:
    turns: int = 0
    exact: int = 0  # the answer is exactly "A op B = C"
    result: int = 0  # the answer ends in the right number
    clean: int = 0  # both stages ended on <|im_end|> / <|endoftext|>
    tokens: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, expected: str, turn: Any, seconds: float) -> None:
        answer = (turn.answer or "").strip()
        self.turns += 1
        self.exact += answer == expected
        self.result += answer.rsplit("=", 1)[-1].strip() == expected.rsplit("=", 1)[-1].strip()
        stops = [s.stop_reason if s else None for s in (turn.reasoning_stats, turn.answer_stats)]
        self.clean += stops == ["eos", "eos"]
        self.tokens += sum(s.new_tokens for s in (turn.reasoning_stats, turn.answer_stats) if s)
        self.seconds += seconds
        if answer != expected or stops != ["eos", "eos"]:
            self.failures.append((turn.user, expected, answer))

    def pct(self, count: int) -> float:
        return 100.0 * count / max(1, self.turns)


@dataclass
class EvalReport:
    rows: dict[str, TurnScore]
    dialogs: int
    seconds: float
    model: str

    def passed(self, exact: float = 98.0, clean: float = 99.5) -> bool:
        arithmetic = [s for name, s in self.rows.items() if name.startswith("turn")]
        return all(s.pct(s.exact) >= exact and s.pct(s.clean) >= clean for s in arithmetic)

    def table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"demo model benchmark: {self.dialogs} held-out dialogs, {self.seconds:.0f}s")
        for column in ("turn", "n", "exact answer", "right number", "clean stops", "tokens/turn"):
            table.add_column(column, justify="left" if column == "turn" else "right")
        for name, s in self.rows.items():
            table.add_row(name, str(s.turns), f"{s.pct(s.exact):.1f} %", f"{s.pct(s.result):.1f} %",
                          f"{s.pct(s.clean):.1f} %", f"{s.tokens / max(1, s.turns):.0f}")  # fmt: skip
        return table

    def markdown(self) -> str:
        lines = ["| turn | n | exact answer | right number | clean stops | tokens/turn |",
                 "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for name, s in self.rows.items():
            lines.append(f"| {name} | {s.turns} | {s.pct(s.exact):.1f} % | {s.pct(s.result):.1f} % | "
                         f"{s.pct(s.clean):.1f} % | {s.tokens / max(1, s.turns):.0f} |")  # fmt: skip
        return "\n".join(lines)


def eval_dialogs(count: int, turns: int = 3, seed: int = EVAL_SEED) -> list[list[tuple[str, str]]]:
    """``count`` dialogs of ``turns`` held-out problems: ``[(question, expected answer), ...]``."""
    rng = random.Random(f"eval/{seed}")
    dialogs = []
    for _ in range(count):
        dialog = []
        for _ in range(turns):
            problem = random_problem(rng, held_out=True, subtraction=EVAL_SUBTRACTION_SHARE)
            dialog.append((phrase(problem, rng, bare=EVAL_BARE_SHARE), problem.answer))
        dialogs.append(dialog)
    return dialogs


def evaluate_demo_model(
    model_dir: str | Path,
    *,
    dialogs: int = 500,
    turns: int = 3,
    off_task: int = 50,
    threads: int | None = 1,
    seed: int = EVAL_SEED,
    max_new_tokens: int = 200,
    backend: Any = None,
    on_dialog: Callable[[int, int], None] | None = None,
    trust_remote_code: bool = False,
) -> EvalReport:
    """Every dialog through the engine's real two-stage inference (``TurnRunner``), turn after turn;
    each turn sees the model's own earlier turns. Then ``off_task`` single greetings/off-task inputs."""
    from reasonchat.conversation import Conversation
    from reasonchat.engine import GenerationSettings, TurnRunner

    if backend is None:
        from reasonchat.engine.transformers_backend import load_backend

        backend = load_backend(
            str(model_dir), device="cpu", threads=threads, trust_remote_code=trust_remote_code
        )
    runner = TurnRunner(backend, GenerationSettings(max_new_tokens=max_new_tokens))
    rows = {f"turn {i + 1}": TurnScore() for i in range(turns)}
    started = time.perf_counter()
    for index, dialog in enumerate(eval_dialogs(dialogs, turns, seed)):
        conversation = Conversation(model=str(model_dir))
        for number, (question, expected) in enumerate(dialog):
            conversation.add_turn(question)
            t0 = time.perf_counter()
            turn = runner.run(conversation)
            rows[f"turn {number + 1}"].add(expected, turn, time.perf_counter() - t0)
        if on_dialog is not None:
            on_dialog(index + 1, dialogs)
    if off_task:
        score = rows["off-task"] = TurnScore()
        rng = random.Random(f"eval-off-task/{seed}")
        for _ in range(off_task):
            conversation = Conversation(model=str(model_dir))
            conversation.add_turn(off_task_message(rng))
            t0 = time.perf_counter()
            score.add(OFF_TASK_ANSWER, runner.run(conversation), time.perf_counter() - t0)
    return EvalReport(rows, dialogs, time.perf_counter() - started, str(model_dir))
