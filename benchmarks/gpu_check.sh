#!/usr/bin/env bash
# Eager vs fast decoding on one GPU, for random-weight models with Qwen2.5-0.5B and Qwen2.5-1.5B shapes
# (bf16, built from their configs: no hub). Under 8 minutes on one GPU. Prints, per model: decode tok/s
# of both paths and their ratio, the weights' bytes per token, the measured read bandwidth and the
# bound it gives, the fraction of it reached, the warm-up, recompiles after it, the share of identical
# greedy tokens, and stage-2 time to first token at 8k tokens of history (with reuse, and the card's
# loop for comparison).
#
#   benchmarks/gpu_check.sh            # PYTHON=.venv/bin/python OUT_DIR=/tmp/gpu-check to override
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${OUT_DIR:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check: torch sees no CUDA device")'
"$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'

for shape in qwen2.5-0.5b qwen2.5-1.5b; do
  dir="$OUT/$shape"
  start=$SECONDS
  "$PY" benchmarks/random_model.py "$shape" "$dir" --dtype bfloat16 --device cuda >/dev/null
  # Each step bounded, so one stuck model cannot take the whole budget.
  timeout 200 "$PY" -m reasonchat bench --model "$dir" --device cuda --dtype bfloat16 --compile \
    --history-tokens 8000 --steering-tokens 0 --stage-tokens 16 --decode-tokens 128 \
    --fast-history-tokens 8000 --json >"$OUT/$shape.json" 2>"$OUT/$shape.log" \
    || { echo "$shape: bench failed (exit $?), see $OUT/$shape.log"; tail -5 "$OUT/$shape.log"; continue; }
  "$PY" - "$OUT/$shape.json" "$shape" $((SECONDS - start)) <<'PYEOF'
import json, sys
data, shape, seconds = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
f, h = data["fast_path"], data["history"][-1]
print(f"== {shape} ({seconds} s) on {data['machine'].get('gpu', 'cpu')}")
print(f"weights/token {f['weight_bytes_per_token'] / 1e6:,.0f} MB; read bandwidth "
      f"{f['read_bandwidth_bytes_per_s'] / 1e9:,.0f} GB/s; bound {f['bound_tokens_per_s']:,.0f} tok/s")
for name in ("eager", "fast"):
    p = f[name]
    if p is None:
        print(f"{name}: unavailable ({f['notice']})")
        continue
    ttft, long = p["stage2_ttft_s"], p["long_decode_tokens_per_s"]
    print(f"{name:>5}: {p['decode_tokens_per_s']:8.1f} tok/s  {p['bound_fraction']:6.1%} of bound  "
          f"warm-up {p['warmup_s']:5.1f} s  at {f['stage2_history_tokens']:,} tokens: stage-2 TTFT "
          f"{ttft if ttft is None else round(ttft, 4)} s, decode {long if long is None else round(long, 1)} tok/s")
if f["ratio"]:
    print(f"fast/eager {f['ratio']:.2f}x; recompiles after warm-up {f['recompiles']}; identical greedy "
          f"tokens {f['identical_token_share']:.1%}")
print(f"card loop stage-2 TTFT at {h['history_tokens']:,}: {h['naive_stage2_ttft_s']:.4f} s vs engine "
      f"(eager) {h['engine_stage2_ttft_s']:.4f} s")
for t in data["targets"]:
    print(f"  target {t['name']}: {t['measured']:.3f} (wanted {t['target']}) {'met' if t['met'] else 'NOT met'}")
PYEOF
done
