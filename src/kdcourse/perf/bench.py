"""`make bench`: tokens/s, MFU and peak memory of the distillation step, the soft-label pass and a
Trainer baseline, in one run: the config, the run's order, and `main`.

    make bench PROFILE=gpu      # ModernBERT-base student, ModernBERT-large teacher, bf16, one GPU
    make bench                  # the cpu profile's tiny models: checks that the command runs
    python -m kdcourse.perf.bench --profile gpu --steps 30 --compile true

Random weights (`workload`: the exact ModernBERT-base/-large shapes when the profile names hub
models, so no download) and random token ids with CFPB-like lengths; every row times the same
examples (`rows`: reference step, packed step, soft-label pass, Trainer baseline), counts FLOPs by
`flops`, and `report` compares and prints them. Imports nothing from `datasets`.
Figures measured with it: docs/benchmarks.md.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from kdcourse.errors import run_cli
from kdcourse.perf.flops import SequenceFlops, non_embedding_params, peak_flops
from kdcourse.perf.report import format_table, ratios
from kdcourse.perf.rows import (RunContext, bench_packed, bench_reference, bench_soft_labels,
                                bench_trainer)
from kdcourse.perf.workload import (MEDIAN_LENGTH, PAD_TO_MULTIPLE_OF, TRAIN_TEXTS, bench_model_config,
                                    build_model, random_examples)

logger = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    profile: str = field(default="cpu", metadata={"help": "profile in configs/profiles.toml (cpu, gpu, smoke)"})
    steps: int = field(default=20, metadata={"help": "timed training steps per measurement"})
    warmup: int = field(default=5, metadata={"help": "untimed steps first (allocator, kernels, compile)"})
    batch_size: int | None = field(default=None, metadata={"help": "default: the profile's train_batch_size"})
    eval_batch_size: int | None = field(default=None, metadata={"help": "default: the profile's eval_batch_size"})
    max_length: int | None = field(default=None, metadata={"help": "default: the profile's max_length"})
    median_length: int = field(default=MEDIAN_LENGTH, metadata={"help": "median text length in tokens (default: "
                               "CFPB's, data/README.md; log-normal, clipped at max_length)"})
    soft_label_batches: int = field(default=8, metadata={"help": "eval batches of the soft-label pass "
                                    "(0: skip it, and the teacher)"})
    eager: bool = field(default=True, metadata={"help": "time the eager reference step, the ratios' baseline "
                        "(false: another row set measured it on this machine; the other rows still run)"})
    trainer: bool = field(default=True, metadata={"help": "also time the Hugging Face Trainer baseline"})
    attention: str = field(default="auto", metadata={"help": "attention of the reference step: auto "
                           "(flash_attention_2 if installed, else sdpa), sdpa, kd_varlen, flex_attention (GPU), "
                           "flash_attention_2, eager"})
    compare_attention: list[str] = field(default_factory=list, metadata={
        "help": "also time the reference step with these attention implementations (e.g. sdpa kd_varlen)"})
    compile: bool = field(default=False, metadata={"help": "also time the reference step under torch.compile"})
    compile_scope: str = field(default="layers", metadata={"help": "layers: compile each encoder layer "
                               "(one compilation shared by all 22); model: the whole model"})
    compile_mode: str = field(default="default", metadata={"help": "torch.compile mode: default, "
                              "reduce-overhead (CUDA graphs: fewer launches), max-autotune-no-cudagraphs"})
    bf16_weights: bool = field(default=False, metadata={"help": "also time the reference step (compiled with "
                               "--compile) with bf16 weights and fp32 master copies (kdcourse.perf.master_weights): "
                               "no autocast, so the residual stream is bf16 too"})
    packed_tokens: int = field(default=0, metadata={"help": "also time the step on texts packed into rows of "
                               "this many tokens (kdcourse.perf.packing; kd_varlen or flash_attention_2); 0: off"})
    pack_max_texts: int = field(default=0, metadata={"help": "at most this many texts per packed row (0: "
                                "packed_tokens // 8): fewer cu_seqlens boundaries, fewer empty kernel blocks"})
    precollate: bool = field(default=False, metadata={"help": "collate (and pin) every timed batch before the "
                             "timed loop, instead of a DataLoader collating on the main thread inside it"})
    coordinate_descent_tuning: bool = field(default=False, metadata={"help": "set Inductor's "
                                            "coordinate_descent_tuning for this run's compilations (Triton "
                                            "kernels' block sizes tuned by measurement: longer compiles)"})
    kernel_table: int = field(default=0, metadata={"help": "profile 3 steps of each reference measurement: host "
                              "and GPU time per step, GPU time by kernel class (matrix, attention, triton, ...) "
                              "and the top N operations and kernels (0: off)"})
    train_texts: int = field(default=TRAIN_TEXTS, metadata={"help": "texts the length-grouped batches are drawn "
                             "from, as one epoch of the CFPB training split (7,672): the timed steps are that "
                             "epoch's first batches, so their padding is the real run's"})
    pad_to_multiple_of: int = field(default=PAD_TO_MULTIPLE_OF, metadata={"help": "round padded lengths up to "
                                    "this (reference and soft labels; the Trainer pads to the longest). Larger: "
                                    "fewer shapes to compile, more padding (docs/benchmarks.md)"})
    cudnn_attention: bool = field(default=False, metadata={"help": "let SDPA use cuDNN attention, which "
                                  "plans per new shape: slow with dynamic padding"})
    extra_batch_sizes: list[int] = field(default_factory=list, metadata={
        "help": "also time the reference step at these batch sizes (larger batches fill the GPU)"})
    temperature: float = field(default=4.0, metadata={"help": "T of the loss (does not change the cost)"})
    alpha: float = field(default=0.9, metadata={"help": "alpha of the loss"})
    out_dir: str | None = field(default=None, metadata={"help": "folder of bench.json (default runs/<profile>); "
                                "a path ending in .json is the file itself, as the deprecated --out named it"})
    device: str | None = field(default=None, metadata={"help": "cpu or cuda (default: cuda if visible)"})

    def __post_init__(self):
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"steps must be >= 1 and warmup >= 0, got {self.steps} and {self.warmup}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (leave it out for the profile's), got {getattr(self, name)}")
        if self.pack_max_texts < 0:
            raise ValueError(f"pack_max_texts must be >= 0 (0: packed_tokens // 8), got {self.pack_max_texts}")
        if self.packed_tokens < 0 or any(size < 1 for size in self.extra_batch_sizes):
            raise ValueError(f"packed_tokens must be >= 0 (0: no packed row) and extra_batch_sizes >= 1, got "
                             f"{self.packed_tokens} and {self.extra_batch_sizes}")
        if self.soft_label_batches < 0:
            raise ValueError(f"soft_label_batches must be >= 0 (0 skips the pass), got {self.soft_label_batches}")
        if not (self.eager or self.compile or self.compare_attention or self.extra_batch_sizes
                or self.packed_tokens or self.trainer or self.soft_label_batches or self.bf16_weights):
            raise ValueError("nothing to measure: every row is switched off (--eager false, --trainer false, "
                             "--soft_label_batches 0 and no --compile, --compare_attention, --extra_batch_sizes, "
                             "--packed_tokens or --bf16_weights)")
        if self.compile_scope not in ("layers", "model"):
            raise ValueError(f"compile_scope must be 'layers' or 'model', got {self.compile_scope!r}")


def run_bench(cfg: BenchConfig, save=lambda results: None) -> dict:
    """Every measurement of `cfg`; returns a dict of rows and ratios. `save(results)` runs after
    each measurement, so what was measured before a failure is kept. Inductor's settings hold for
    this call only (compilation happens lazily, at each row's first steps)."""
    import torch._inductor.config as inductor
    with inductor.patch(coordinate_descent_tuning=cfg.coordinate_descent_tuning):
        return _run_bench(cfg, save)


def _run_bench(cfg: BenchConfig, save) -> dict:
    from kdcourse.models import attention_implementation
    from kdcourse.notebook import load_graded_functions
    from kdcourse.paths import SOLUTION_NOTEBOOK
    from kdcourse.profiles import get_profile
    from kdcourse.utils import pick_device

    profile = get_profile(cfg.profile)
    device = pick_device(cfg.device)
    graded = load_graded_functions(SOLUTION_NOTEBOOK)
    card, peak = peak_flops(device)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # the few fp32 matmuls left outside autocast
        torch.backends.cuda.enable_cudnn_sdp(cfg.cudnn_attention)
    student_config = bench_model_config(profile, "student", attention=cfg.attention)
    teacher_config = bench_model_config(profile, "teacher", attention=cfg.attention)
    ctx = RunContext(device=device, autocast_dtype=torch.bfloat16 if device.startswith("cuda") else None,
                     peak=peak, batch_size=cfg.batch_size or profile.train_batch_size,
                     eval_batch_size=cfg.eval_batch_size or profile.eval_batch_size,
                     max_length=cfg.max_length or profile.max_length, pad_token_id=student_config.pad_token_id)
    median = min(cfg.median_length, ctx.max_length)
    largest_batch = max([ctx.batch_size, *cfg.extra_batch_sizes])
    n_examples = max(cfg.train_texts, (cfg.warmup + cfg.steps) * largest_batch,
                     cfg.soft_label_batches * ctx.eval_batch_size)
    examples = random_examples(n_examples, ctx.max_length, median, student_config.vocab_size,
                               student_config.num_labels)
    results = {"config": asdict(cfg), "profile": profile.name, "device": card,
               "peak_bf16_tflops": peak / 1e12 if peak else None, "torch": torch.__version__,
               "attention": student_config._attn_implementation, "batch_size": ctx.batch_size,
               "max_length": ctx.max_length,
               "mean_length": sum(len(e["input_ids"]) for e in examples) / len(examples),
               "inductor": {"coordinate_descent_tuning": cfg.coordinate_descent_tuning}}
    logger.info("bench: %s", json.dumps({k: v for k, v in results.items() if k != "config"}))
    loss = graded.distillation_loss

    def attempt(name, measure):  # optional rows: a failure (OOM, compile) is reported, the rest goes on
        try:
            results[name] = measure()
        except Exception as err:
            logger.exception("%s failed", name)
            results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"[:2000]
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        save(results)

    # 1. the reference distillation step, at the profile's batch size (and any extra ones)
    student = build_model(student_config, device)
    student_flops = SequenceFlops(student_config, non_embedding_params(student))
    results["student_params"] = sum(p.numel() for p in student.parameters())
    if cfg.eager:
        results["reference"] = bench_reference(student, examples, loss, cfg, ctx, student_flops)
        save(results)
    for attention in cfg.compare_attention:  # the same step with another attention
        attempt(f"reference_{attention}", lambda: bench_reference(
            build_model(bench_model_config(profile, "student", attention=attention), device), examples,
            loss, cfg, ctx, student_flops))
    for size in cfg.extra_batch_sizes:
        attempt(f"reference_batch{size}", lambda: bench_reference(
            build_model(student_config, device), examples, loss, cfg, replace(ctx, batch_size=size), student_flops))
    if cfg.packed_tokens:  # packed rows need varlen attention: flash_attn if installed, else kd_varlen
        packed_attention = "flash_attention_2" if attention_implementation() == "flash_attention_2" else "kd_varlen"
        packed_config = bench_model_config(profile, "student", attention=packed_attention)
        n_packed = 2 * (cfg.warmup + cfg.steps) * cfg.packed_tokens // median
        packed_examples = random_examples(n_packed, ctx.max_length, median, student_config.vocab_size,
                                          student_config.num_labels, seed=2)
        attempt("reference_packed", lambda: bench_packed(
            build_model(packed_config, device), packed_examples, loss, cfg, ctx, student_flops))
        if cfg.compile:
            attempt("reference_packed_compiled", lambda: bench_packed(
                build_model(packed_config, device), packed_examples, loss, cfg, ctx, student_flops, compiled=True))
    del student
    # 2. the Trainer baseline on the same examples and loss, from fresh weights
    if cfg.trainer:
        results["trainer"] = bench_trainer(build_model(student_config, device), examples, loss, cfg, ctx,
                                           student_flops)
        save(results)
    # 3. the soft-label pass of the teacher
    if cfg.soft_label_batches:
        teacher = build_model(teacher_config, device).eval()
        teacher_flops = SequenceFlops(teacher_config, non_embedding_params(teacher), training=False)
        results["teacher_params"] = sum(p.numel() for p in teacher.parameters())
        soft_examples = examples[: cfg.soft_label_batches * ctx.eval_batch_size]
        results["soft_labels"] = bench_soft_labels(teacher, soft_examples, graded.collect_teacher_logits, cfg, ctx,
                                                   teacher_flops)
        del teacher
        save(results)
    # 4. the reference step under torch.compile, last: compiling takes a while and may fail
    if cfg.compile:
        attempt("reference_compiled", lambda: bench_reference(
            build_model(student_config, device), examples, loss, cfg, ctx, student_flops, compiled=True))
    if cfg.bf16_weights:  # the same step with a bf16 residual stream
        attempt("reference_bf16_weights", lambda: bench_reference(
            build_model(student_config, device), examples, loss, cfg, ctx, student_flops, compiled=cfg.compile,
            bf16_weights=True))
    results["ratios"] = ratios(results)
    save(results)
    return results


def main(argv=None) -> dict:
    from kdcourse.cli import parse_config
    from kdcourse.paths import RUNS_DIR, move_to_history
    (cfg,) = parse_config(BenchConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(cfg.out_dir or RUNS_DIR / cfg.profile)
    out = out if out.suffix == ".json" else out / "bench.json"  # a .json path: the file, as --out named it
    out.parent.mkdir(parents=True, exist_ok=True)
    move_to_history(out.parent, [out.name])
    results = run_bench(cfg, save=lambda r: out.write_text(json.dumps(r, indent=1) + "\n"))
    print(format_table(results) + f"\nresults -> {out}")
    return results


if __name__ == "__main__":
    run_cli(main)
