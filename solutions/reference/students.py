"""The reference run's students: one trained with the notebook's `train_student`, and its rows.

    data = RunData(...)                                   # built once, after the soft labels
    runs = StudentRuns(graded, cfg, profile, data, out / "runs.jsonl")
    run = runs(temperature=4.0, alpha=0.9, seed=0, epochs=3)   # trained once, then reused
    row = model_row([run, ...], params, latency_ms, teacher_accuracy)

A run dict holds the settings, `losses`, `train_seconds`, `tokens_per_s`, the `validation` and `test`
metrics (kdcourse.metrics.evaluate_logits), their logits [N, C] and the trained `model`.
"""
from __future__ import annotations

import inspect
import json
import logging
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from kdcourse.data import make_loader
from kdcourse.distributed import NonFiniteLossError, oom_hint
from kdcourse.metrics import evaluate_logits
from kdcourse.models import compile_layers, load_student
from kdcourse.soft_labels import predict
from kdcourse.utils import set_seed

logger = logging.getLogger("reference")
HEADLINE = ("accuracy", "macro_f1", "agreement", "kl_to_teacher", "ece")


@dataclass(frozen=True)
class RunData:
    """What every student of a run reads; fixed once the teacher's soft labels exist (a demo that
    trains on other data makes its own copy with dataclasses.replace)."""
    device: str                              # "cpu", "cuda", "cuda:1"
    autocast_dtype: torch.dtype | None       # bf16 on a GPU with a bf16 profile, else None
    tokenizer: transformers.PreTrainedTokenizerBase
    label_names: list[str]                   # C names in label-id order
    tokenized: object                        # DatasetDict: every split with input_ids and length
    labels: dict[str, torch.Tensor]          # split -> labels [N]
    teacher_logits: dict[str, torch.Tensor]  # split -> teacher logits [N, C]
    train_tokens: int                        # tokens in the training split (one epoch)
    train_data: object                       # Dataset the students train on: train + teacher_logits


def train_one(graded, cfg, profile, data: RunData, *, temperature: float, alpha: float, seed: int,
              epochs: int) -> dict:
    """A fresh student trained with the notebook's `train_student`; its test and val metrics."""
    device = data.device
    set_seed(seed)  # before the model: same seed, same initial weights and batch order
    student = load_student(profile, data.label_names, data.tokenizer, seed=seed,
                           attention=cfg.attention).to(device)
    loader = make_loader(data.train_data, data.tokenizer, batch_size=profile.train_batch_size,
                         shuffle=True, seed=seed, pin_memory=device.startswith("cuda"),
                         pad_to_multiple_of=cfg.pad_to_multiple_of)
    optimizer = torch.optim.AdamW(student.parameters(), lr=profile.student_lr,
                                  weight_decay=profile.weight_decay, fused=device.startswith("cuda"))
    steps = epochs * len(loader)
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(profile.warmup_ratio * steps), steps)
    model = compile_layers(student, cfg.compile_mode) if cfg.compile else student
    extra = {k: v for k, v in {"autocast_dtype": data.autocast_dtype,
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
           "tokens_per_s": epochs * data.train_tokens / train_seconds, "losses": losses}
    for split in ("validation", "test"):
        logits = predict(graded.collect_teacher_logits, student, data.tokenized[split],
                         data.tokenizer, profile.eval_batch_size, device, data.autocast_dtype)
        run[split] = evaluate_logits(logits, data.labels[split], data.teacher_logits[split],
                                     label_names=data.label_names)
        run[f"{split}_logits"] = logits
    run["model"] = student
    logger.info("student T=%g alpha=%g seed %d: %d steps, %.0f s, loss %.3f, val acc %.3f, "
                "val macro-F1 %.3f, agree %.3f", temperature, alpha, seed, len(losses), train_seconds,
                sum(losses[-20:]) / len(losses[-20:]), run["validation"]["accuracy"],
                run["validation"]["macro_f1"], run["validation"]["agreement"])
    return run


class StudentRuns:
    """The headline's and the sweep's students, each trained once per (T, alpha, seed, epochs) and
    written to runs.jsonl as it finishes (nothing finished is lost if a later run fails)."""

    def __init__(self, graded, cfg, profile, data: RunData, log: Path):
        self.graded, self.cfg, self.profile, self.data, self.log = graded, cfg, profile, data, log
        self.done: dict[tuple, dict] = {}
        log.write_text("")

    def __call__(self, temperature: float, alpha: float, seed: int, epochs: int) -> dict:
        key = (temperature, alpha, seed, epochs)
        if key not in self.done:
            run = train_one(self.graded, self.cfg, self.profile, self.data, temperature=temperature,
                            alpha=alpha, seed=seed, epochs=epochs)
            with self.log.open("a") as f:
                f.write(json.dumps({k: v for k, v in run.items() if not k.endswith(("logits", "model"))
                                    and k != "losses"} | {"final_loss": run["losses"][-1]},
                                   default=str) + "\n")
            self.done[key] = run
        return self.done[key]


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
    """One metrics.json `sweep` row: the settings and the headline numbers on val and test."""
    return {"temperature": run["temperature"], "alpha": run["alpha"], "seed": run["seed"],
            "epochs": run["epochs"], "train_seconds": run["train_seconds"],
            **{f"val_{k}": run["validation"][k] for k in HEADLINE},
            **{f"test_{k}": run["test"][k] for k in HEADLINE}}
