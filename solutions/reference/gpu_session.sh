#!/usr/bin/env bash
# The GPU checks and benchmark in one go, for a machine with a CUDA GPU and no internet (no datasets
# or papermill needed). Results and logs go to $OUT (default runs/gpu/session).
#   bash solutions/reference/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-runs/gpu/session}
mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi -L
$PY - <<'PY'
import torch, transformers
from kdcourse.attention import torch_varlen_kernel, varlen_available
from kdcourse.models import attention_implementation
print(f"torch {torch.__version__}, transformers {transformers.__version__}, varlen_attn "
      f"{torch_varlen_kernel() is not None}, usable {varlen_available()}, auto -> {attention_implementation()}")
PY
# 1. kd_varlen against SDPA and the reference kernel (bf16)
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_attention.py 2>&1 | tail -3
bench() {  # bench NAME ARGS...: one process per measurement set, each with its own time limit
    local name=$1; shift
    timeout "${LIMIT:-150}" $PY -m kdcourse.bench --profile gpu --kernel_table 12 --out "$OUT/$name.json" "$@" \
        > "$OUT/$name.log" 2>&1
    echo "== $name (exit $?): $*"; grep -A12 "^measurement" "$OUT/$name.log" || tail -5 "$OUT/$name.log"
}
# 2. eager, the profile's batch (32) and 128: SDPA against kd_varlen, the Trainer, soft labels
bench eager_sdpa --attention sdpa --compare_attention kd_varlen --extra_batch_sizes 128
bench eager_varlen --attention kd_varlen --batch_size 128 --trainer false --compile true --warmup 8
# 3. torch.compile per layer at batch 128 with SDPA: default mode, then CUDA graphs
bench compiled_sdpa --attention sdpa --batch_size 128 --trainer false --soft_label_batches 1 --compile true --warmup 8
LIMIT=200 bench graphs_sdpa --attention sdpa --batch_size 128 --trainer false --soft_label_batches 1 --compile true \
    --compile_mode reduce-overhead --warmup 12
