#!/usr/bin/env bash
# The GPU checks and the benchmark matrix in one go, for a machine with a CUDA GPU and no internet:
# needs torch and transformers, not datasets or papermill. Rows run most informative first; each has
# its own time limit, capped by what is left of BUDGET seconds (default 560), and none starts with
# under a minute left, so the script ends inside a 10-minute call with whatever it measured.
# Results: $OUT/*.json (at most 8 files, for the device tool), failures in $OUT/failures.log. Old
# results in $OUT are moved aside first, not deleted.
#   bash solutions/reference/gpu_session.sh          # results: $OUT (default runs/gpu/session)
#   ROWS="b128_varlen b128_graphs" bash solutions/reference/gpu_session.sh   # these rows only ("tests": the tests)
#   BENCH_PROFILE=smoke BUDGET=1500 bash solutions/reference/gpu_session.sh   # the script itself, on CPU
# Figures from earlier sessions: solutions/reference/gpu_results/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BENCH_PROFILE=${BENCH_PROFILE:-gpu}
OUT=${OUT:-runs/$BENCH_PROFILE/session}
BUDGET=${BUDGET:-560}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -n "$(ls -A "$OUT")" ]; then
    previous="$(dirname "$OUT")/$(basename "$OUT").previous-$(date +%Y%m%d-%H%M%S)"
    mkdir -p "$previous" && mv "$OUT"/* "$previous"/ && echo "earlier results moved to $previous"
fi
nvidia-smi -L || echo "no nvidia-smi: the gpu tests skip, the bench runs on CPU"
CUDA=$($PY - <<'PY'
import sys, torch, transformers
from kdcourse.attention import torch_varlen_kernel, varlen_available
from kdcourse.models import attention_implementation
print(f"torch {torch.__version__}, transformers {transformers.__version__}, varlen_attn "
      f"{torch_varlen_kernel() is not None}, usable {varlen_available()}, auto -> {attention_implementation()}",
      file=sys.stderr)
print(int(torch.cuda.is_available()))
PY
)
left() { echo $((BUDGET - SECONDS)); }
# 1. the `gpu` tests: kd_varlen, FlexAttention and packing against SDPA and the reference kernel (bf16),
#    MasterWeights with fused AdamW on CUDA;
#    their CPU tests ran in CI already
limit=$(left); [ "$limit" -gt 120 ] && limit=120
if [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" tests "* ]]; then
    echo "== gpu tests not in ROWS"
elif [ "$limit" -ge 10 ]; then
    timeout "$limit" $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_attention.py tests/test_packing.py tests/test_utils.py \
        2>&1 | tail -4
else
    echo "== gpu tests skipped: $(left) s left of BUDGET=$BUDGET"
fi

bench() {  # bench NAME ARGS...: one process per row set, its own time limit; the JSON goes to $OUT
    local name=$1; shift
    local limit=${LIMIT:-150} log=/tmp/bench_$name.log
    if [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $name "* ]]; then echo "== $name not in ROWS"; return; fi
    if [ "$(left)" -lt 60 ]; then echo "== $name skipped: $(left) s left of BUDGET=$BUDGET"; return; fi
    [ "$(left)" -lt "$limit" ] && limit=$(left)
    timeout "$limit" $PY -m kdcourse.bench --profile "$BENCH_PROFILE" --kernel_table 12 --steps 15 --warmup 2 \
        --out "$OUT/$name.json" "$@" > "$log" 2>&1
    local rc=$?
    echo "== $name (exit $rc, ${SECONDS}s): $*"; grep -A20 "^measurement" "$log" || tail -5 "$log"
    [ $rc -eq 0 ] || { echo "== $name (exit $rc)"; cat "$log"; } >> "$OUT/failures.log"
}
baseline() {  # the eager step and soft labels: once a call (old results were moved aside above)
    if compgen -G "$OUT/*.json" > /dev/null; then echo --eager false --soft_label_batches 0
    else echo --soft_label_batches 1; fi
}
gpu_only() {  # FlexAttention has no CPU backward: its rows need CUDA
    if [ "$CUDA" = 1 ]; then bench "$@"; else echo "== $1 skipped: FlexAttention needs CUDA for training"; fi
}
# Attention is the largest gap (25 of 91 ms a step at batch 128, for 5% of the FLOPs), so its candidates
# come first, beside an SDPA baseline from the same machine. With GPU and host time about equal, a
# faster kernel shows fully only once CUDA graphs take the host's launches away.
# 2. batch 128, compiled per layer: SDPA, FlexAttention (block masks for padding and windows), the same
#    with CUDA graphs, kd_varlen (fixed-shape unpadding), SDPA with CUDA graphs
#    The first row set that runs times the eager step and the soft-label pass; the others time only
#    their own rows (`baseline`: any JSON in $OUT means a row set of this call measured them already).
#    The first also times the compiled step with bf16 weights and fp32 master copies (the memory side:
#    kdcourse.traffic counts 28% fewer bytes through the fused kernels).
LIMIT=210 bench b128_sdpa --attention sdpa --batch_size 128 --trainer false --soft_label_batches 1 --compile true \
    --bf16_weights true
LIMIT=180 gpu_only b128_flex --attention flex_attention --batch_size 128 --trainer false $(baseline) \
    --compile true
LIMIT=200 gpu_only b128_flex_graphs --attention flex_attention --batch_size 128 --trainer false \
    $(baseline) --compile true --compile_mode reduce-overhead
bench b128_varlen --attention kd_varlen --batch_size 128 --trainer false $(baseline) --compile true
LIMIT=200 bench b128_graphs --attention sdpa --batch_size 128 --trainer false $(baseline) \
    --compile true --compile_mode reduce-overhead
# 3. packed rows (no padding, no masks, one shape) of 8k tokens (~38 texts, like batch 32), eager and compiled
bench packed8k --attention sdpa --trainer false $(baseline) --packed_tokens 8192 --compile true
# 4. the profile's batch (32): eager and compiled per layer, kd_varlen, the Trainer, soft labels
bench b32 --attention sdpa --compare_attention kd_varlen --compile true
echo "gpu_session: ${SECONDS}s"
