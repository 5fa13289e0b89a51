"""The Week-6 reference experiment: teacher -> soft labels -> hard-label and distilled students.

    make reference                                   # cpu profile, offline, on CPU
    make teacher PROFILE=gpu && make reference PROFILE=gpu     # ModernBERT-large -> -base, one GPU
    python solutions/reference/run_reference.py --profile smoke --seeds 0 --notebook false  # quick

Stages: data; the teacher (fine-tuned first on the offline profiles if its checkpoint is missing);
its soft labels for every split (kdcourse.soft_labels), cached once under a fingerprint of data,
tokenizer and teacher; students on hard labels only and distilled, over `seeds` (students.py); a
temperature x alpha sweep chosen on validation; the demos (demos.py); report.md, metrics.json, plots
and the executed solution notebook in runs/<profile>/ (report.py). The four graded functions come
from the solution notebook, never a copy. Times of each profile: docs/reference.md.
For several GPUs, checkpoints and resumption, see train_distill.py beside this file.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers

import demos  # beside this file, as students.py and report.py: the toy, omitted-class and out-of-fold stages
from kdcourse.cli import parse_config
from kdcourse.data import load_label_names, load_splits, tokenize_splits, with_teacher_logits
from kdcourse.distributed import write_json
from kdcourse.errors import UsageError, run_cli
from kdcourse.metrics import evaluate_logits
from kdcourse.models import check_attention, checkpoint_dir, count_parameters, load_tokenizer, measure_latency
from kdcourse.notebook import load_graded_functions
from kdcourse.paths import RUNS_DIR, SOLUTION_NOTEBOOK, move_to_history
from kdcourse.profiles import get_profile
from kdcourse.soft_labels import teacher_soft_labels
from kdcourse.teacher import get_teacher, sample_caps
from kdcourse.utils import pick_device, tqdm
from report import RUN_FILES, fmt, run_notebook, save_plots, write_report
from students import HEADLINE, RunData, StudentRuns, model_row, sweep_row, train_one

logger = logging.getLogger("reference")


@dataclass
class ReferenceConfig:
    """The reference run's options (`--name value`); the demos' are demos.DemoConfig."""
    profile: str = field(default="cpu", metadata={"help": "profile in configs/profiles.toml: cpu, gpu, smoke"})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2],
                             metadata={"help": "seeds of the headline comparison (hard vs distilled)"})
    temperature: float = field(default=4.0, metadata={"help": "T of the headline distilled student"})
    alpha: float = field(default=0.9, metadata={"help": "weight of the soft term of the headline student"})
    sweep_temperatures: list[float] = field(default_factory=lambda: [1.0, 4.0],
                                            metadata={"help": "T values of the sweep (seed = first seed)"})
    sweep_alphas: list[float] = field(default_factory=lambda: [0.5, 0.9],
                                      metadata={"help": "alpha values of the sweep; [] skips the sweep"})
    sweep_epochs: int | None = field(default=None, metadata={"help": "epochs per sweep run. None: the "
                                     "profile's student_epochs on a GPU (the sweep then reuses the headline "
                                     "runs), 1 on CPU (keeps make reference short there)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap the training split (quick runs)"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping; None: off"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the students' encoder layers "
                          "(a GPU option; its speed-up and compile time: docs/benchmarks.md)"})
    compile_mode: str = field(default="default", metadata={"help": "with --compile: default, reduce-overhead "
                              "(CUDA graphs), max-autotune-no-cudagraphs"})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "round the students' padded "
                                           "lengths up to this (None: each batch's longest text). CUDA graphs "
                                           "(reduce-overhead) record a graph per length: a larger multiple "
                                           "records fewer (docs/benchmarks.md)"})
    attention: str = field(default="auto", metadata={"help": "the students' attention: auto (flash_attention_2 "
                           "if installed, else sdpa; sdpa for the tiny models), sdpa, kd_varlen, flex_attention "
                           "(CUDA only), flash_attention_2, eager. make bench compares them (docs/benchmarks.md)"})
    out_dir: str | None = field(default=None, metadata={"help": "output folder (default runs/<profile>)"})
    notebook: bool = field(default=True, metadata={"help": "execute the solution notebook with papermill"})
    notebook_max_train_samples: int | None = field(default=500, metadata={
        "help": "the executed notebook's MAX_TRAIN_SAMPLES (kept small: the full runs are here)"})
    recompute_stale_cache: bool = field(default=False, metadata={
        "help": "move a soft-label cache whose stored fingerprint is not its name's aside (kept as "
                "*.stale-<fingerprint>) and recompute"})
    device: str | None = field(default=None, metadata={"help": "cpu, cuda (default: cuda if visible)"})

    def __post_init__(self):
        if self.compile_mode not in ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"):
            raise UsageError(f"unknown compile_mode {self.compile_mode!r}: default, reduce-overhead, "
                             "max-autotune or max-autotune-no-cudagraphs")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise UsageError(f"pad_to_multiple_of must be >= 1 (or None), got {self.pad_to_multiple_of}")
        check_attention(self.attention)
        if not self.seeds:
            raise UsageError("seeds is empty: give at least one, e.g. --seeds 0")
        if self.temperature <= 0 or any(t <= 0 for t in self.sweep_temperatures):
            raise UsageError(f"temperatures must be > 0, got {self.temperature} and "
                             f"{self.sweep_temperatures}")
        if not all(0 <= a <= 1 for a in [self.alpha, *self.sweep_alphas]):
            raise UsageError(f"alpha must be in [0, 1], got {self.alpha} and {self.sweep_alphas}")


# ---------------------------------------------------------------- main
def main(argv=None) -> dict:
    cfg, demo_cfg = parse_config((ReferenceConfig, demos.DemoConfig), argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    transformers.logging.set_verbosity_error()
    wall_start = time.perf_counter()
    overrides = {"max_train_samples": cfg.max_train_samples} if cfg.max_train_samples else {}
    profile = get_profile(cfg.profile, **overrides)
    device = pick_device(cfg.device)
    autocast_dtype = torch.bfloat16 if profile.precision == "bf16" and device.startswith("cuda") else None
    if cfg.attention == "flex_attention" and not device.startswith("cuda"):
        raise UsageError("--attention flex_attention needs a CUDA GPU: PyTorch's FlexAttention has no CPU "
                         "backward. Use sdpa (or kd_varlen) on CPU.")
    if device.startswith("cuda"):  # cuDNN attention re-plans for every new padded length (see bench)
        torch.backends.cuda.enable_cudnn_sdp(False)
    out = Path(cfg.out_dir or RUNS_DIR / profile.name)
    out.mkdir(parents=True, exist_ok=True)
    move_to_history(out, RUN_FILES)   # bench.json and traffic.json are not a run's
    resolved = {"config": asdict(cfg) | asdict(demo_cfg), "profile": profile.to_dict(), "device": device,
                "autocast_dtype": str(autocast_dtype), "torch": torch.__version__,
                "transformers": transformers.__version__, "command": sys.argv}
    logger.info("resolved config: %s", json.dumps(resolved))
    write_json(out / "config.json", resolved)
    graded = load_graded_functions(SOLUTION_NOTEBOOK)  # the one source of the graded functions

    # data: splits, tokenizer, token counts
    label_names = load_label_names()
    splits = load_splits(max_samples=sample_caps(profile))
    tokenizer = load_tokenizer(profile)
    tokenized = tokenize_splits(splits, tokenizer, profile.max_length)
    labels = {s: torch.tensor(splits[s]["label"]) for s in splits}
    logger.info("splits %s, %d labels", {s: len(d) for s, d in splits.items()}, len(label_names))

    # teacher: the fine-tuned checkpoint (trained here first on the offline profiles)
    teacher = get_teacher(profile, label_names).to(device)

    # soft labels: once per split, in inference mode at the eval batch size, cached with a fingerprint
    teacher_logits, soft = teacher_soft_labels(graded.collect_teacher_logits, teacher, tokenized, tokenizer,
                                               profile, device, autocast_dtype, cfg.recompute_stale_cache)
    train_tokens = sum(tokenized["train"]["length"])
    data = RunData(device=device, autocast_dtype=autocast_dtype, tokenizer=tokenizer, label_names=label_names,
                   tokenized=tokenized, labels=labels, teacher_logits=teacher_logits, train_tokens=train_tokens,
                   train_data=with_teacher_logits(tokenized["train"], teacher_logits["train"]))
    teacher_test = evaluate_logits(teacher_logits["test"], labels["test"], teacher_logits["test"],
                                   label_names=label_names)
    teacher_info = json.loads((checkpoint_dir(profile, "teacher") / "metrics.json").read_text())
    teacher_row = {k: teacher_test[k] for k in HEADLINE} | {
        "params": count_parameters(teacher),
        "latency_ms": measure_latency(teacher, 1, profile.max_length, device)["latency_ms"],
        "train_seconds": teacher_info["train_seconds"],
        "tokens_per_s": profile.teacher_epochs * train_tokens / teacher_info["train_seconds"],
        "validation_macro_f1": teacher_info["validation"]["macro_f1"]}
    logger.info("teacher: test acc %.3f, macro-F1 %.3f", teacher_row["accuracy"], teacher_row["macro_f1"])
    del teacher

    # students: hard labels only (alpha = 0) and distilled, over the seeds; each run logged at once
    metrics = {"profile": profile.name, "device": device, "teacher": teacher_row,
               "soft_labels": soft.to_dict(), "sweep": [], "sweep_best": None}
    student = StudentRuns(graded, cfg, profile, data, out / "runs.jsonl")
    epochs = profile.student_epochs
    hard, distilled = [], []
    for seed in tqdm(cfg.seeds, desc="seeds"):
        hard.append(student(1.0, 0.0, seed, epochs))
        distilled.append(student(cfg.temperature, cfg.alpha, seed, epochs))
    params = count_parameters(hard[0]["model"])
    latency = measure_latency(hard[0]["model"], 1, profile.max_length, device)["latency_ms"]
    metrics["student_hard"] = model_row(hard, params, latency, teacher_row["accuracy"])
    metrics["student_distilled"] = model_row(distilled, params, latency, teacher_row["accuracy"])
    metrics["retained_accuracy"] = {k: metrics[k]["mean"]["retained_accuracy"]
                                    for k in ("student_hard", "student_distilled")}
    metrics["wall_seconds"] = time.perf_counter() - wall_start
    write_json(out / "metrics.json", metrics)  # the headline survives a failure in the sweep

    # sweep: T x alpha on the first seed, plus the hard-label baseline, chosen on validation
    if cfg.sweep_alphas and cfg.sweep_temperatures:
        sweep_epochs = cfg.sweep_epochs or (epochs if device.startswith("cuda") else 1)
        grid = [(1.0, 0.0)] + [(t, a) for t in cfg.sweep_temperatures for a in cfg.sweep_alphas]
        for temperature, alpha in tqdm(grid, desc="sweep"):
            metrics["sweep"].append(sweep_row(student(temperature, alpha, cfg.seeds[0], sweep_epochs)))
            write_json(out / "metrics.json", metrics)
        best = max((r for r in metrics["sweep"] if r["alpha"] > 0), key=lambda r: r["val_macro_f1"])
        metrics["sweep_best"] = {k: best[k] for k in ("temperature", "alpha", "val_macro_f1")}

    # demos: the 2-D toy, the omitted class, out-of-fold soft labels (demos.py)
    metrics |= demos.run_demos(demo_cfg, graded, cfg, profile, data, distilled, out, train_one,
                               save=lambda part: write_json(out / "metrics.json", metrics | part))

    # outputs: plots, report, the executed notebook (report.py)
    save_plots(out, data, hard, distilled, metrics, cfg)
    if cfg.notebook:
        metrics["notebook"] = str(run_notebook(out, cfg, profile))
    metrics["wall_seconds"] = time.perf_counter() - wall_start
    write_json(out / "metrics.json", metrics)
    report = write_report(out, metrics, cfg, profile)
    h, d = metrics["student_hard"], metrics["student_distilled"]
    print(f"reference run -> {out} ({metrics['wall_seconds']:.0f} s)\n"
          f"  teacher            macro-F1 {teacher_row['macro_f1']:.3f}, acc {teacher_row['accuracy']:.3f}\n"
          f"  student, hard      macro-F1 {fmt(h, 'macro_f1')}, agree {fmt(h, 'agreement')}\n"
          f"  student, distilled macro-F1 {fmt(d, 'macro_f1')}, agree {fmt(d, 'agreement')}\n"
          f"  report: {report}")
    return metrics


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_cli(main)
