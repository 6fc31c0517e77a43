"""``reasonchat bench`` runs end to end on a tiny model and reports what the issue's targets need."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonchat.cli import main
from tests.helpers.engine_fixtures import (  # noqa: F401 (fixtures)
    byte_tokenizer_dir,
    stopping_model_dir,
)


def test_bench_json_reports_history_decode_and_targets(
    capsys: pytest.CaptureFixture[str], stopping_model_dir: Path
) -> None:
    code = main(
        ["bench", "--model", str(stopping_model_dir), "--history-tokens", "200",
         "--decode-tokens", "16", "--stage-tokens", "8", "--steering-tokens", "60", "--no-compile", "--json"]
    )  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    (history,) = data["history"]
    assert history["history_tokens"] == 200
    assert history["stage2_prompt_tokens"] >= 200
    # Stage 2 follows stage 1 of the same conversation: nearly all of its prompt is cached.
    assert history["stage2_cached_fraction"] >= 0.9
    for key in ("naive_stage2_ttft_s", "engine_stage2_ttft_s", "naive_next_turn_ttft_s", "engine_next_turn_ttft_s"):
        assert history[key] > 0
    assert data["decode"]["bare_tokens_per_s"] > 0 and data["decode"]["engine_tokens_per_s"] > 0
    assert data["fast_path"] is None  # --no-compile: no eager-vs-fast comparison (tests/test_fast_path.py)
    assert {t["name"].split(" at ")[0] for t in data["targets"]} == {
        "stage-2 TTFT engine/naive", "stage-2 prompt served from cache", "streaming decode / bare generate",
        "re-answer prefill share of the answer prompt", "think-more prompt tokens prefilled",
    }  # fmt: skip
    (steering,) = data["steering"]
    assert (steering["history_tokens"], steering["reasoning_tokens"]) == (200, 60)
    # Re-answering an edited last line prefills from that line on; thinking more, next to nothing.
    assert 0 < steering["reanswer_prefilled_fraction"] < 0.3
    assert 1 <= steering["think_more_prefilled_tokens"] <= 2
    for key in ("reanswer_ttft_s", "cold_reanswer_ttft_s", "think_more_ttft_s", "cold_think_more_ttft_s"):
        assert steering[key] > 0
    # Think 4 times (the default): the batch beside one after another, both timed.
    sampling = data["sampling"]
    assert (sampling["samples"], sampling["tokens_per_sample"]) == (4, 16)
    assert sampling["sequential_s"] > 0 and sampling["batch_s"] > 0 and sampling["speedup"] > 0


def test_bench_refuses_no_cache_reuse(capsys: pytest.CaptureFixture[str], stopping_model_dir: Path) -> None:
    assert main(["bench", "--model", str(stopping_model_dir), "--no-cache-reuse"]) == 2
    assert "drop --no-cache-reuse" in capsys.readouterr().err
