#!/usr/bin/env bash
# The full-size run, the GPU checks and the benchmark matrix in one go, for a machine with a CUDA GPU
# and no internet: needs torch and transformers, not datasets or papermill (the full-size run reads
# the token ids `make full-size-data PROFILE=gpu-shapes` wrote here: carry .cache/full_size). Rows run
# most informative first; each has its own time limit, capped by what is left of BUDGET seconds
# (default 560), and none starts with under a minute left, so the script ends inside a 10-minute call
# with whatever it measured. Results: $OUT/*.json and $OUT/full_size/ (the device tool brings back 8
# files), failures in $OUT/failures.log. Old results in $OUT are moved aside first, not deleted.
#   bash solutions/reference/gpu_session.sh          # results: $OUT (default runs/gpu/session)
#   ROWS="b128_varlen b128_graphs" bash solutions/reference/gpu_session.sh   # these rows only ("tests": the
#                                                    # tests, "full_size": the full-size run)
#   BENCH_PROFILE=smoke BUDGET=1500 bash solutions/reference/gpu_session.sh   # the script itself, on CPU
# Figures from earlier sessions: docs/benchmarks.md (raw JSON in solutions/reference/gpu_results/).
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BENCH_PROFILE=${BENCH_PROFILE:-gpu}
FULL_PROFILE=${FULL_PROFILE:-$([ "$BENCH_PROFILE" = gpu ] && echo gpu-shapes || echo "$BENCH_PROFILE")}
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
from kdcourse.perf.attention import torch_varlen_kernel, varlen_available
from kdcourse.models import attention_implementation
print(f"torch {torch.__version__}, transformers {transformers.__version__}, varlen_attn "
      f"{torch_varlen_kernel() is not None}, usable {varlen_available()}, auto -> {attention_implementation()}",
      file=sys.stderr)
print(int(torch.cuda.is_available()))
PY
)
left() { echo $((BUDGET - SECONDS)); }
wanted() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }
# 0. the full-size run (issue 17): teacher fine-tuning, soft labels, hard and distilled students at the
#    released shapes, each stage's time, tokens/s, peak memory and finiteness -> $OUT/full_size/.
#    Its estimated time: docs/benchmarks.md; its limit stays under 8 minutes.
limit=$(left); [ "$limit" -gt "${FULL_LIMIT:-480}" ] && limit=${FULL_LIMIT:-480}
if ! wanted full_size; then
    echo "== full_size not in ROWS"
elif [ "$limit" -ge 60 ]; then
    timeout "$limit" $PY -m kdcourse.perf.full_size --profile "$FULL_PROFILE" --out_dir "$OUT/full_size" \
        > /tmp/full_size.log 2>&1
    rc=$?
    echo "== full_size (exit $rc, ${SECONDS}s)"; cat "$OUT/full_size/full_size.md" 2>/dev/null || tail -20 /tmp/full_size.log
    [ $rc -eq 0 ] || { echo "== full_size (exit $rc)"; tail -200 /tmp/full_size.log; } >> "$OUT/failures.log"
else
    echo "== full_size skipped: $(left) s left of BUDGET=$BUDGET"
fi
# 1. the `gpu` tests: kd_varlen, FlexAttention and packing against SDPA and the reference kernel (bf16),
#    MasterWeights with fused AdamW on CUDA;
#    their CPU tests ran in CI already
limit=$(left); [ "$limit" -gt 120 ] && limit=120
if ! wanted tests; then
    echo "== gpu tests not in ROWS"
elif [ "$limit" -ge 10 ]; then
    timeout "$limit" $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_attention.py tests/test_packing.py tests/test_master_weights.py \
        2>&1 | tail -4
else
    echo "== gpu tests skipped: $(left) s left of BUDGET=$BUDGET"
fi

bench() {  # bench NAME ARGS...: one process per row set, its own time limit; the JSON goes to $OUT
    local name=$1; shift
    local limit=${LIMIT:-150} log=/tmp/bench_$name.log
    if ! wanted "$name"; then echo "== $name not in ROWS"; return; fi
    if [ "$(left)" -lt 60 ]; then echo "== $name skipped: $(left) s left of BUDGET=$BUDGET"; return; fi
    [ "$(left)" -lt "$limit" ] && limit=$(left)
    timeout "$limit" $PY -m kdcourse.perf.bench --profile "$BENCH_PROFILE" --kernel_table 12 --steps 15 --warmup 2 \
        --out_dir "$OUT/$name.json" "$@" > "$log" 2>&1  # a .json out_dir: that file, saved after each row
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
# Attention is the largest gap for its share of the FLOPs (the batch-128 budget in docs/benchmarks.md), so
# its candidates come first, beside an SDPA baseline from the same machine. With GPU and host time about equal, a
# faster kernel shows fully only once CUDA graphs take the host's launches away.
# The first row set that runs times the eager step and the soft-label pass; the others time only
# their own rows (`baseline`: any JSON in $OUT means a row set of this call measured them already).
# 2. the same-machine baseline: batch 128, SDPA, compiled per layer; and the same with bf16 weights and
#    fp32 master copies (kdcourse.perf.traffic counts fewer bytes through the fused kernels: docs/benchmarks.md)
LIMIT=210 bench b128_sdpa --attention sdpa --batch_size 128 --trainer false --soft_label_batches 1 --compile true \
    --bf16_weights true
# 3. a flash-class attention under compile: FlexAttention (block masks for padding and windows)
LIMIT=180 gpu_only b128_flex --attention flex_attention --batch_size 128 --trainer false $(baseline) \
    --compile true
# 4. packed rows of 32k tokens (~150 texts; one shape, no padding, no masks) with at most 256 texts a row
#    (cu_seqlens of 322 entries instead of 4,162), kd_varlen, eager and compiled with CUDA graphs,
#    batches collated before the timed loop
LIMIT=210 bench packed32k --attention sdpa --trainer false $(baseline) --packed_tokens 32768 --pack_max_texts 256 \
    --compile true --compile_mode reduce-overhead --precollate true
# 5. FlexAttention with CUDA graphs: the host's launches replayed
LIMIT=200 gpu_only b128_flex_graphs --attention flex_attention --batch_size 128 --trainer false \
    $(baseline) --compile true --compile_mode reduce-overhead
# 6. Inductor's coordinate-descent tuning of the Triton kernels (the elementwise third), SDPA as in 2
LIMIT=240 bench b128_cdt --attention sdpa --batch_size 128 --trainer false $(baseline) --compile true \
    --coordinate_descent_tuning true
# 7. batches collated and pinned before the timed loop (collation leaves the host's step time), SDPA as in 2
bench b128_precollated --attention sdpa --batch_size 128 --trainer false $(baseline) --compile true --precollate true
# 8. kd_varlen under compile (fixed-shape unpadding), SDPA with CUDA graphs
bench b128_varlen --attention kd_varlen --batch_size 128 --trainer false $(baseline) --compile true
LIMIT=200 bench b128_graphs --attention sdpa --batch_size 128 --trainer false $(baseline) \
    --compile true --compile_mode reduce-overhead
# 9. packed rows of 8k tokens (~38 texts, like batch 32), eager and compiled
bench packed8k --attention sdpa --trainer false $(baseline) --packed_tokens 8192 --compile true
# 10. the profile's batch (32): eager and compiled per layer, kd_varlen, the Trainer, soft labels
bench b32 --attention sdpa --compare_attention kd_varlen --compile true
echo "gpu_session: ${SECONDS}s"
