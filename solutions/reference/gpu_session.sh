#!/usr/bin/env bash
# The GPU checks and the benchmark matrix in one go (about 6 minutes on an H200), for a machine with a
# CUDA GPU and no internet: needs torch and transformers, not datasets or papermill.
#   bash solutions/reference/gpu_session.sh          # results: $OUT (default runs/gpu/session)/*.json
#   BENCH_PROFILE=smoke bash solutions/reference/gpu_session.sh   # the script itself, on CPU (minutes)
# Figures from earlier sessions: solutions/reference/gpu_results/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BENCH_PROFILE=${BENCH_PROFILE:-gpu}
OUT=${OUT:-runs/$BENCH_PROFILE/session}
mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi -L || echo "no nvidia-smi: the gpu tests skip, the bench runs on CPU"
$PY - <<'PY'
import torch, transformers
from kdcourse.attention import torch_varlen_kernel, varlen_available
from kdcourse.models import attention_implementation
print(f"torch {torch.__version__}, transformers {transformers.__version__}, varlen_attn "
      f"{torch_varlen_kernel() is not None}, usable {varlen_available()}, auto -> {attention_implementation()}")
PY
# 1. kd_varlen, FlexAttention and packing against SDPA and the reference kernel (bf16)
timeout 200 $PY -m pytest -q -p no:cacheprovider tests/test_attention.py tests/test_packing.py 2>&1 | tail -3

bench() {  # bench NAME ARGS...: one process per row set, its own time limit; the JSON goes to $OUT
    local name=$1; shift
    local log=/tmp/bench_$name.log
    timeout "${LIMIT:-150}" $PY -m kdcourse.bench --profile "$BENCH_PROFILE" --kernel_table 12 --steps 15 --warmup 2 \
        --out "$OUT/$name.json" "$@" > "$log" 2>&1
    local rc=$?
    echo "== $name (exit $rc): $*"; grep -A14 "^measurement" "$log" || tail -5 "$log"
    [ $rc -eq 0 ] || { echo "== $name (exit $rc)"; cat "$log"; } >> "$OUT/failures.log"  # one file: 8 come back
}
# Most informative first (a call may end before the last rows): each row set has its own limit, and its
# JSON is written row by row. Attention is the largest gap (25 of 91 ms a step at batch 128, for 5% of
# the FLOPs), so its candidates come first, beside an SDPA baseline from the same machine.
# 2. batch 128 compiled per layer: SDPA, FlexAttention (block masks for padding and windows),
#    kd_varlen (fixed-shape unpadding under compile), then SDPA with CUDA graphs (the host overhead)
bench b128_sdpa --attention sdpa --batch_size 128 --trainer false --soft_label_batches 1 --compile true
LIMIT=180 bench b128_flex --attention flex_attention --batch_size 128 --trainer false --soft_label_batches 1 \
    --compile true
bench b128_varlen --attention kd_varlen --batch_size 128 --trainer false --soft_label_batches 1 --compile true
LIMIT=200 bench b128_graphs --attention sdpa --batch_size 128 --trainer false --soft_label_batches 1 \
    --compile true --compile_mode reduce-overhead
# 3. packed rows (no padding, no masks, one shape) of 8k tokens (~38 texts, like batch 32), eager and compiled
bench packed8k --attention sdpa --trainer false --soft_label_batches 1 --packed_tokens 8192 --compile true
# 4. the profile's batch (32): eager and compiled per layer, kd_varlen, the Trainer, soft labels
bench b32 --attention sdpa --compare_attention kd_varlen --compile true
# 5. packed 32k-token rows (one static shape) with CUDA graphs
LIMIT=200 bench packed32k_graphs --attention sdpa --trainer false --soft_label_batches 1 --packed_tokens 32768 \
    --compile true --compile_mode reduce-overhead
