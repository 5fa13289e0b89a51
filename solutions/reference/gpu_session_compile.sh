#!/usr/bin/env bash
# The compiled reference step against eager on one card, every padded shape compiled before timing.
set -uo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-runs/gpu/session}; mkdir -p "$OUT"; PY=${PY:-python3}
nvidia-smi -L
for size in 128 256; do
    timeout ${LIMIT:-110} $PY -m kdcourse.bench --profile gpu --attention sdpa --batch_size $size --trainer false \
        --soft_label_batches 1 --compile true --steps 15 --warmup 2 --kernel_table 12 \
        --out "$OUT/compiled_b$size.json" > "$OUT/compiled_b$size.log" 2>&1
    echo "== batch $size (exit $?)"; grep -A6 "^measurement" "$OUT/compiled_b$size.log" || tail -5 "$OUT/compiled_b$size.log"
done
