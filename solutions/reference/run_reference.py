"""The Week-6 reference experiment: teacher -> soft labels -> hard-label and distilled students.

    make reference                                   # cpu profile, offline, under 10 min on 2 cores
    make teacher PROFILE=gpu && make reference PROFILE=gpu     # ModernBERT-large -> -base, one GPU
    python solutions/reference/run_reference.py --profile smoke --seeds 0 --notebook false  # seconds

Stages: data; the teacher (fine-tuned first on the offline profiles if its checkpoint is missing);
its soft labels for every split, cached once under a fingerprint of data, tokenizer and teacher (a
stale cache is refused); students on hard labels only and distilled, over `seeds`; a temperature x
alpha sweep chosen on validation; report.md, metrics.json, plots and the executed solution notebook
in runs/<profile>/. The four graded functions come from the solution notebook, never a copy.
For several GPUs, checkpoints and resumption, see train_distill.py beside this file.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers
from transformers import HfArgumentParser

from kdcourse import plots
from kdcourse.data import load_label_names, load_splits, make_loader, tokenize_splits, with_teacher_logits
from kdcourse.distributed import NonFiniteLossError, oom_hint, write_json
from kdcourse.errors import UsageError, run_cli
from kdcourse.logits_cache import (StaleCacheError, cached_logits, dataset_fingerprint,
                                   logits_fingerprint, model_fingerprint, move_stale_aside,
                                   tokenizer_fingerprint)
from kdcourse.metrics import class_similarity, evaluate_logits, reliability_bins
from kdcourse.models import (check_attention, checkpoint_dir, compile_layers, count_parameters, load_student,
                             load_tokenizer, measure_latency)
from kdcourse.notebook import load_graded_functions
from kdcourse.paths import CACHE_DIR, RUNS_DIR, SOLUTION_NOTEBOOK, move_to_history
from kdcourse.profiles import Profile, get_profile
from kdcourse.teacher import get_teacher, sample_caps
from kdcourse.utils import autocast, pick_device, set_seed, tqdm

import demos  # noqa: E402 (beside this file: the toy, omitted-class and out-of-fold stages)

logger = logging.getLogger("reference")
HEADLINE = ("accuracy", "macro_f1", "agreement", "kl_to_teacher", "ece")


@dataclass
class ReferenceConfig:
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
                                     "runs), 1 on CPU (to fit the 10-minute budget)"})
    max_train_samples: int | None = field(default=None, metadata={"help": "cap the training split (quick runs)"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping; None: off"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the students' encoder layers "
                          "(GPU: 1.65x the eager step at batch 32 on an H200; a minute to compile)"})
    compile_mode: str = field(default="default", metadata={"help": "with --compile: default, reduce-overhead "
                              "(CUDA graphs), max-autotune-no-cudagraphs"})
    pad_to_multiple_of: int | None = field(default=None, metadata={"help": "round the students' padded "
                                           "lengths up to this (None: each batch's longest text). The bench "
                                           "pads to 8; CUDA graphs record a graph per length, so with "
                                           "reduce-overhead 64 keeps them to 8"})
    attention: str = field(default="auto", metadata={"help": "the students' attention: auto (flash_attention_2 "
                           "if installed, else sdpa; sdpa for the tiny models), sdpa, kd_varlen, flex_attention "
                           "(CUDA only), flash_attention_2, eager. The bench compares them (README)"})
    out_dir: str | None = field(default=None, metadata={"help": "output folder (default runs/<profile>)"})
    notebook: bool = field(default=True, metadata={"help": "execute the solution notebook with papermill"})
    notebook_max_train_samples: int | None = field(default=500, metadata={
        "help": "the executed notebook's MAX_TRAIN_SAMPLES (kept small: the full runs are here)"})
    recompute_stale_cache: bool = field(default=False, metadata={
        "help": "move a stale soft-label cache aside (kept as *.stale-<fingerprint>) and recompute"})
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


# ---------------------------------------------------------------- soft labels
def soft_label_cache(split: str, profile: Profile, dataset, tokenizer_fp: str, teacher_fp: str,
                     recompute_stale: bool) -> tuple[Path, str]:
    """The cache file of a split (one fixed name, so another teacher's file is refused, not
    silently shadowed) and the fingerprint it must carry."""
    fingerprint = logits_fingerprint(data=dataset_fingerprint(dataset), tokenizer=tokenizer_fp,
                                     teacher=teacher_fp, max_length=profile.max_length)
    path = CACHE_DIR / "logits" / profile.name / f"reference-{split}.safetensors"
    aside = move_stale_aside(path, fingerprint) if recompute_stale else None
    if aside:
        logger.warning("soft-label cache %s is stale: moved to %s, recomputing", path, aside)
    return path, fingerprint


def predict(collect, model, dataset, tokenizer, batch_size: int, device: str, autocast_dtype=None):
    """Logits [N, C] in dataset order, through the graded `collect_teacher_logits`; the batches
    run longest first (little padding, and an early out-of-memory) and are put back in order."""
    order = sorted(range(len(dataset)), key=lambda i: -dataset[i]["length"]) \
        if "length" in dataset.column_names else list(range(len(dataset)))
    loader = make_loader(dataset.select(order), tokenizer, batch_size=batch_size,
                         pin_memory=device.startswith("cuda"))
    with autocast(device, autocast_dtype):
        sorted_logits = collect(model, loader, device)
    logits = torch.empty_like(sorted_logits)
    logits[torch.tensor(order)] = sorted_logits
    return logits


# ---------------------------------------------------------------- students
def train_one(graded, cfg: ReferenceConfig, profile: Profile, ctx: dict, *, temperature: float,
              alpha: float, seed: int, epochs: int) -> dict:
    """A fresh student trained with the notebook's `train_student`; its test and val metrics."""
    device = ctx["device"]
    set_seed(seed)  # before the model: same seed, same initial weights and batch order
    student = load_student(profile, ctx["label_names"], ctx["tokenizer"], seed=seed,
                           attention=cfg.attention).to(device)
    loader = make_loader(ctx["train_data"], ctx["tokenizer"], batch_size=profile.train_batch_size,
                         shuffle=True, seed=seed, pin_memory=device.startswith("cuda"),
                         pad_to_multiple_of=cfg.pad_to_multiple_of)
    optimizer = torch.optim.AdamW(student.parameters(), lr=profile.student_lr,
                                  weight_decay=profile.weight_decay, fused=device.startswith("cuda"))
    steps = epochs * len(loader)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(profile.warmup_ratio * steps), steps)
    model = compile_layers(student, cfg.compile_mode) if cfg.compile else student
    extra = {k: v for k, v in {"autocast_dtype": ctx["autocast_dtype"],
                               "max_grad_norm": cfg.max_grad_norm}.items()
             if k in inspect.signature(graded.train_student).parameters}
    start = time.perf_counter()
    with oom_hint(profile.train_batch_size, profile.max_length, "student training"):
        losses = graded.train_student(model, loader, optimizer, temperature=temperature, alpha=alpha,
                                      epochs=epochs, scheduler=scheduler, device=device, **extra)
    train_seconds = time.perf_counter() - start
    bad = next((i for i, loss in enumerate(losses) if not math.isfinite(loss)), None)
    if bad is not None:
        raise NonFiniteLossError(f"student (T={temperature}, alpha={alpha}, seed {seed}) loss is "
                                 f"{losses[bad]} at step {bad + 1}: lower student_lr in the profile "
                                 "or set --max_grad_norm")
    run = {"temperature": temperature, "alpha": alpha, "seed": seed, "epochs": epochs,
           "steps": len(losses), "train_seconds": train_seconds,
           "tokens_per_s": epochs * ctx["train_tokens"] / train_seconds, "losses": losses}
    for split in ("validation", "test"):
        logits = predict(graded.collect_teacher_logits, student, ctx["tokenized"][split],
                         ctx["tokenizer"], profile.eval_batch_size, device, ctx["autocast_dtype"])
        run[split] = evaluate_logits(logits, ctx["labels"][split], ctx["teacher_logits"][split],
                                     label_names=ctx["label_names"])
        run[f"{split}_logits"] = logits
    run["model"] = student
    logger.info("student T=%g alpha=%g seed %d: %d steps, %.0f s, loss %.3f, val acc %.3f, "
                "val macro-F1 %.3f, agree %.3f", temperature, alpha, seed, len(losses), train_seconds,
                sum(losses[-20:]) / len(losses[-20:]), run["validation"]["accuracy"],
                run["validation"]["macro_f1"], run["validation"]["agreement"])
    return run


def model_row(runs: list[dict], params: int, latency_ms: float, teacher_accuracy: float) -> dict:
    """One metrics.json row: headline numbers as lists over seeds, their mean and std."""
    row = {k: [r["test"][k] for r in runs] for k in HEADLINE}
    row |= {"params": params, "latency_ms": latency_ms, "seeds": [r["seed"] for r in runs],
            "train_seconds": [r["train_seconds"] for r in runs],
            "tokens_per_s": [r["tokens_per_s"] for r in runs],
            "retained_accuracy": [r["test"]["accuracy"] / teacher_accuracy for r in runs]}
    row["mean"] = {k: statistics.fmean(row[k]) for k in (*HEADLINE, "retained_accuracy")}
    row["std"] = {k: statistics.stdev(row[k]) if len(row[k]) > 1 else 0.0
                  for k in (*HEADLINE, "retained_accuracy")}
    return row


def sweep_row(run: dict) -> dict:
    return {"temperature": run["temperature"], "alpha": run["alpha"], "seed": run["seed"],
            "epochs": run["epochs"], "train_seconds": run["train_seconds"],
            **{f"val_{k}": run["validation"][k] for k in HEADLINE},
            **{f"test_{k}": run["test"][k] for k in HEADLINE}}


# ---------------------------------------------------------------- outputs
def fmt(row: dict, key: str) -> str:
    value = row[key] if not isinstance(row[key], list) else None
    if value is not None:
        return f"{value:.3f}"
    return f"{row['mean'][key]:.3f} ± {row['std'][key]:.3f}"


def write_report(out: Path, metrics: dict, cfg: ReferenceConfig, profile: Profile) -> Path:
    t, h, d = metrics["teacher"], metrics["student_hard"], metrics["student_distilled"]
    gain = d["mean"]["macro_f1"] - h["mean"]["macro_f1"]
    noise = max(d["std"]["macro_f1"], h["std"]["macro_f1"])
    lines = [f"# Reference run: profile `{profile.name}`", "", profile.description, "",
             f"Device {metrics['device']}, {len(cfg.seeds)} seeds {cfg.seeds}, headline distillation "
             f"T={cfg.temperature:g}, alpha={cfg.alpha:g}; wall time {metrics['wall_seconds']:.0f} s. "
             "Test split; students as mean ± std over seeds.", "",
             "| model | params | accuracy | macro-F1 | agreement | KL to teacher | ECE | retained acc. "
             "| latency ms | train s | tokens/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in [("teacher", t), ("student, hard labels", h), ("student, distilled", d)]:
        retained = fmt(row, "retained_accuracy") if "mean" in row else "1.000"
        speed = (f"{statistics.fmean(row['train_seconds']):.0f} | {statistics.fmean(row['tokens_per_s']):.0f}"
                 if isinstance(row["train_seconds"], list) else
                 f"{row['train_seconds']:.0f} | {row['tokens_per_s']:.0f}")
        lines.append(f"| {name} | {row['params'] / 1e6:.2f}M | {fmt(row, 'accuracy')} | "
                     f"{fmt(row, 'macro_f1')} | {fmt(row, 'agreement')} | {fmt(row, 'kl_to_teacher')} | "
                     f"{fmt(row, 'ece')} | {retained} | {row['latency_ms']:.2f} | {speed} |")
    verdict = ("helped" if gain > noise else "hurt" if gain < -noise else "made no difference "
               "larger than the seed-to-seed spread")
    lines += ["", f"**Did distillation help?** Macro-F1 {gain * 100:+.1f} points (distilled minus hard, "
              f"mean over seeds; spread up to {noise * 100:.1f}): distillation {verdict}. Agreement with "
              f"the teacher {(d['mean']['agreement'] - h['mean']['agreement']) * 100:+.1f} points. "
              f"The teacher leads the hard-label student by "
              f"{(t['macro_f1'] - h['mean']['macro_f1']) * 100:.1f} macro-F1 points.", ""]
    if metrics["sweep"]:
        lines += ["## Sweep (seed %d, chosen on validation)" % metrics["sweep"][0]["seed"], "",
                  "| T | alpha | epochs | val macro-F1 | val agreement | val ECE | test macro-F1 |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(metrics["sweep"], key=lambda r: -r["val_macro_f1"]):
            lines.append(f"| {r['temperature']:g} | {r['alpha']:g} | {r['epochs']} | "
                         f"{r['val_macro_f1']:.3f} | {r['val_agreement']:.3f} | {r['val_ece']:.3f} | "
                         f"{r['test_macro_f1']:.3f} |")
        best = metrics["sweep_best"]
        lines += ["", f"Best on validation: T={best['temperature']:g}, alpha={best['alpha']:g}. "
                  "With one seed, differences under the spread above are noise.", ""]
    lines += demos.report_lines(metrics)
    sl = metrics["soft_labels"]
    lines += ["## Soft labels", "", f"Cache `{sl['path']}` (fingerprint `{sl['fingerprint']}`), "
              + (f"computed in {sl['seconds']:.1f} s ({sl['tokens_per_s']:.0f} tokens/s)."
                 if not sl["cached"] else "loaded from the cache."), "",
              "## Files", "", "metrics.json, config.json, runs.jsonl (every student run as it finished), "
              "training_curves.png, confusion_distilled.png, reliability.png, class_similarity.png, "
              "sweep_macro_f1.png, sweep_agreement.png, distillation.ipynb (the solution notebook, "
              "executed with small sweep parameters).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def save_plots(out: Path, ctx: dict, hard: list, distilled: list, metrics: dict, cfg) -> None:
    names = ctx["label_names"]
    plots.plot_training_curves({"hard labels (alpha = 0)": hard[0]["losses"],
                                f"distilled (T = {cfg.temperature:g}, alpha = {cfg.alpha:g})":
                                    distilled[0]["losses"]},
                               smooth=max(1, len(hard[0]["losses"]) // 20),
                               save_to=out / "training_curves.png")
    plots.plot_confusion_matrix(distilled[0]["test"]["confusion_matrix"], names,
                                title="distilled student, test", save_to=out / "confusion_distilled.png")
    plots.plot_reliability_diagram(reliability_bins(distilled[0]["test_logits"].softmax(-1),
                                                    ctx["labels"]["test"]),
                                   title=f"distilled student: ECE {distilled[0]['test']['ece']:.3f}",
                                   save_to=out / "reliability.png")
    plots.plot_class_similarity(class_similarity(ctx["teacher_logits"]["train"], ctx["labels"]["train"],
                                                 len(names), temperature=cfg.temperature), names,
                                save_to=out / "class_similarity.png")
    rows = [r for r in metrics["sweep"] if r["alpha"] > 0]
    baseline = next((r for r in metrics["sweep"] if r["alpha"] == 0), None)
    for y in ("macro_f1", "agreement"):
        if rows:
            plots.plot_sweep(rows, x="temperature", y=f"val_{y}", hue="alpha",
                             baseline=baseline[f"val_{y}"] if baseline else None,
                             title=f"validation {y}", save_to=out / f"sweep_{y}.png")


def run_notebook(out: Path, cfg: ReferenceConfig, profile: Profile) -> Path:
    """Execute the solution notebook with papermill, the profile as parameter, small sweep sizes."""
    import papermill
    caps = [n for n in (cfg.notebook_max_train_samples, profile.max_train_samples) if n]
    parameters = {"PROFILE": cfg.profile, "SEED": cfg.seeds[0], "TEMPERATURE": cfg.temperature,
                  "ALPHA": cfg.alpha, "SWEEP_TEMPERATURES": [cfg.temperature],
                  "SWEEP_ALPHAS": [cfg.alpha], "SWEEP_EPOCHS": 1,
                  "MAX_TRAIN_SAMPLES": min(caps) if caps else None}
    logger.info("executing %s with %s", SOLUTION_NOTEBOOK, parameters)
    target = out / "distillation.ipynb"
    papermill.execute_notebook(str(SOLUTION_NOTEBOOK), str(target), parameters=parameters,
                               cwd=str(SOLUTION_NOTEBOOK.parent), progress_bar=False,
                               kernel_name="python3", log_output=False)
    return target


RUN_FILES = ("config.json", "metrics.json", "runs.jsonl", "report.md", "distillation.ipynb",
             "training_curves.png", "confusion_distilled.png", "reliability.png",
             "class_similarity.png", "sweep_macro_f1.png", "sweep_agreement.png", *demos.FILES)  # what a run writes


# ---------------------------------------------------------------- main
def main(argv=None) -> dict:
    cfg, demo_cfg = HfArgumentParser((ReferenceConfig, demos.DemoConfig)).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", force=True)
    transformers.logging.set_verbosity_error()
    wall_start = time.perf_counter()
    overrides = {"max_train_samples": cfg.max_train_samples} if cfg.max_train_samples else {}
    profile = get_profile(cfg.profile, **overrides)
    device = pick_device(cfg.device)
    autocast_dtype = torch.bfloat16 if profile.precision == "bf16" and device.startswith("cuda") else None
    if cfg.attention == "flex_attention" and not device.startswith("cuda"):
        raise ValueError("--attention flex_attention needs a CUDA GPU: PyTorch's FlexAttention has no CPU "
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
    teacher_fp, tokenizer_fp = model_fingerprint(teacher), tokenizer_fingerprint(tokenizer)

    # soft labels: once per split, in inference mode at the eval batch size, cached with a fingerprint
    teacher_logits, soft = {}, {"cached": True, "seconds": 0.0, "tokens": 0}
    for split in ("train", "validation", "test"):
        path, fingerprint = soft_label_cache(split, profile, tokenized[split], tokenizer_fp,
                                             teacher_fp, cfg.recompute_stale_cache)

        def compute(split=split):
            start = time.perf_counter()
            with oom_hint(profile.eval_batch_size, profile.max_length, "the soft-label pass"):
                logits = predict(graded.collect_teacher_logits, teacher, tokenized[split], tokenizer,
                                 profile.eval_batch_size, device, autocast_dtype)
            soft.update(cached=False, seconds=soft["seconds"] + time.perf_counter() - start,
                        tokens=soft["tokens"] + sum(tokenized[split]["length"]))
            return logits

        try:
            teacher_logits[split] = cached_logits(path, fingerprint, compute, split=split,
                                                  teacher=profile.teacher)
        except StaleCacheError as err:
            raise StaleCacheError(f"{err} Or run again with --recompute_stale_cache true.") from None
        if split == "train":
            soft |= {"path": str(path), "fingerprint": fingerprint}
    soft["tokens_per_s"] = soft["tokens"] / soft["seconds"] if soft["seconds"] else None
    train_tokens = sum(tokenized["train"]["length"])
    ctx = {"device": device, "autocast_dtype": autocast_dtype, "tokenizer": tokenizer,
           "label_names": label_names, "tokenized": tokenized, "labels": labels,
           "teacher_logits": teacher_logits, "train_tokens": train_tokens,
           "train_data": with_teacher_logits(tokenized["train"], teacher_logits["train"])}
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
    metrics = {"profile": profile.name, "device": device, "teacher": teacher_row, "soft_labels": soft,
               "sweep": [], "sweep_best": None}
    runs_log = out / "runs.jsonl"
    runs_log.write_text("")
    done: dict[tuple, dict] = {}

    def student(temperature, alpha, seed, epochs):
        key = (temperature, alpha, seed, epochs)
        if key not in done:
            run = train_one(graded, cfg, profile, ctx, temperature=temperature, alpha=alpha,
                            seed=seed, epochs=epochs)
            with runs_log.open("a") as f:  # nothing finished is lost if a later run fails
                f.write(json.dumps({k: v for k, v in run.items() if not k.endswith(("logits", "model"))
                                    and k != "losses"} | {"final_loss": run["losses"][-1]},
                                   default=str) + "\n")
            done[key] = run
        return done[key]

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
    metrics |= demos.run_demos(demo_cfg, graded, cfg, profile, ctx, distilled, out, train_one,
                               save=lambda part: write_json(out / "metrics.json", metrics | part))

    # outputs: plots, report, the executed notebook
    save_plots(out, ctx, hard, distilled, metrics, cfg)
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
