"""`make bench`: tokens/s, MFU and peak memory of the reference distillation step, the soft-label
pass and a Hugging Face Trainer baseline, in one run. The code is `kdcourse.bench`.

    make bench                    # the cpu profile's tiny models (checks the command)
    make bench PROFILE=gpu        # ModernBERT-base / -large shapes, random weights, bf16, one GPU
    python solutions/reference/bench.py --profile gpu --steps 30 --compile true
"""
from kdcourse.bench import main
from kdcourse.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
