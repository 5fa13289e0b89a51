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
timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_attention.py 2>&1 | tee "$OUT/test_attention.log"
# 2. eager: the profile's batch, attentions compared, larger batches, Trainer, soft labels, kernel table
timeout 210 $PY -m kdcourse.bench --profile gpu --compare_attention sdpa --extra_batch_sizes 128 256 \
    --kernel_table 25 --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log" | grep -v "^ \|^--\|^Name\|^Self"
# 3. torch.compile per layer at batch 128 (eager at 128 first, same process)
timeout 200 $PY -m kdcourse.bench --profile gpu --batch_size 128 --trainer false --soft_label_batches 1 \
    --compile true --out "$OUT/bench_compiled.json" 2>&1 | tee "$OUT/bench_compiled.log" | tail -12
