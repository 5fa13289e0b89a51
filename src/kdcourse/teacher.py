"""Fine-tune a profile's teacher on the training split; select the epoch by validation macro-F1.

    python -m kdcourse.teacher --profile cpu     # tiny teacher, on CPU (time: docs/reference.md)
    python -m kdcourse.teacher --profile gpu     # ModernBERT-large, bf16, one GPU
    python -m kdcourse.teacher --profile cpu --folds 3   # out-of-fold teachers (kdcourse.oof)

Plain cross-entropy fine-tuning with the Hugging Face `Trainer` (the teacher is not what this week
grades). Saves the checkpoint with its label map, the tokenizer, the resolved profile and
`metrics.json` (validation and test) to `checkpoints/<profile>/teacher/`.
"""
from __future__ import annotations

import inspect
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from filelock import FileLock
from transformers import Trainer, TrainingArguments

from kdcourse.cli import parse_config
from kdcourse.data import PadCollator, load_label_names, load_splits, tokenize_splits
from kdcourse.errors import UsageError, run_cli
from kdcourse.metrics import evaluate_logits
from kdcourse.models import (checkpoint_dir, count_parameters, load_teacher, load_teacher_init,
                             load_tokenizer)
from kdcourse.profiles import Profile, get_profile
from kdcourse.utils import set_seed

logger = logging.getLogger(__name__)


def sample_caps(profile: Profile) -> dict:
    """Per-split row caps of a profile (quick runs), for `load_splits(max_samples=...)`."""
    return {"train": profile.max_train_samples, "validation": profile.max_eval_samples,
            "test": profile.max_eval_samples}


def _compute_metrics(prediction) -> dict:
    metrics = evaluate_logits(prediction.predictions, prediction.label_ids)
    return {k: metrics[k] for k in ("accuracy", "macro_f1", "nll", "ece")}


def training_arguments(profile: Profile, output_dir: str, seed: int) -> TrainingArguments:
    bf16 = profile.precision == "bf16" and torch.cuda.is_available()
    kwargs = dict(
        output_dir=output_dir, seed=seed, report_to=[],
        per_device_train_batch_size=profile.train_batch_size,
        per_device_eval_batch_size=profile.eval_batch_size,
        learning_rate=profile.teacher_lr, num_train_epochs=profile.teacher_epochs,
        weight_decay=profile.weight_decay,
        lr_scheduler_type="linear", bf16=bf16,
        eval_strategy="epoch", save_strategy="epoch", save_total_limit=1,
        load_best_model_at_end=True, metric_for_best_model="macro_f1", greater_is_better=True,
        logging_steps=50, disable_tqdm=False, dataloader_pin_memory=torch.cuda.is_available(),
    )
    # Batches of similar length waste less compute on padding (the option's name changed in 5.x).
    params = inspect.signature(TrainingArguments).parameters
    # transformers 5.x reads a float warmup_steps in [0, 1) as a ratio; 4.x had warmup_ratio.
    warmup = "warmup_ratio" if "warmup_ratio" in params else "warmup_steps"
    kwargs[warmup] = float(profile.warmup_ratio)
    if "train_sampling_strategy" in params:
        kwargs["train_sampling_strategy"] = "group_by_length"
    elif "group_by_length" in params:
        kwargs["group_by_length"] = True
    if torch.cuda.is_available():
        kwargs["optim"] = "adamw_torch_fused"
    return TrainingArguments(**kwargs)


def _existing_teacher(output_dir: Path) -> str | None:
    """A line describing the fine-tuned teacher saved in `output_dir`, or None if there is none."""
    if not (output_dir / "config.json").exists():
        return None
    try:
        metrics = json.loads((output_dir / "metrics.json").read_text())
        return (f"validation macro-F1 {metrics['validation']['macro_f1']:.3f}, "
                f"{metrics['train_seconds']:.0f} s of training")
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable metrics.json"


def finetune_teacher(profile: Profile, seed: int = 0, output_dir: str | Path | None = None,
                     overwrite: bool = False) -> Path:
    """Fine-tune and save the teacher; returns its folder.

    A teacher already in `output_dir` is refused with FileExistsError before any work (it may be
    hours of GPU time), unless `overwrite`: then it moves to `<output_dir>.previous` (replacing an
    older one there) once the new teacher is complete."""
    output_dir = Path(output_dir or checkpoint_dir(profile, "teacher"))
    existing = _existing_teacher(output_dir)
    if existing and not overwrite:
        raise FileExistsError(
            f"a fine-tuned teacher is already at {output_dir} ({existing}). Training a new one "
            "would replace it and make the cached soft labels stale. To do that anyway: `make "
            "teacher ARGS=--overwrite` (or --overwrite); the old teacher is then kept as "
            f"{output_dir.name}.previous beside it.")
    set_seed(seed)
    label_names = load_label_names()
    splits = load_splits(max_samples=sample_caps(profile))
    tokenizer = load_tokenizer(profile)
    tokenized = tokenize_splits(splits, tokenizer, profile.max_length)
    tokenized = tokenized.remove_columns(["complaint_id", "text", "product", "issue",
                                          "date_received"])
    model = load_teacher_init(profile, label_names, tokenizer, seed=seed)
    logger.info("teacher %s: %.1fM parameters", profile.teacher, count_parameters(model) / 1e6)

    with tempfile.TemporaryDirectory(dir=output_dir.parent if output_dir.parent.exists() else None) as work:
        trainer = Trainer(model=model, args=training_arguments(profile, work, seed),
                          train_dataset=tokenized["train"], eval_dataset=tokenized["validation"],
                          data_collator=PadCollator(tokenizer.pad_token_id),
                          compute_metrics=_compute_metrics)
        start = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - start
        metrics = {"profile": profile.to_dict(), "seed": seed, "train_seconds": train_seconds,
                   "params": count_parameters(model)}
        for split in ("validation", "test"):
            pred = trainer.predict(tokenized[split])
            metrics[split] = evaluate_logits(pred.predictions, pred.label_ids,
                                             label_names=label_names)
        staging = Path(work) / "final"
        trainer.save_model(staging)
        tokenizer.save_pretrained(staging)
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        if output_dir.exists():  # keep the previous teacher until the new one is complete
            previous = output_dir.with_name(output_dir.name + ".previous")
            shutil.rmtree(previous, ignore_errors=True)
            output_dir.rename(previous)
            logger.info("the previous teacher (%s) is kept in %s", existing or "incomplete", previous)
        output_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), output_dir)
    logger.info("teacher saved to %s: val macro-F1 %.3f, test macro-F1 %.3f", output_dir,
                metrics["validation"]["macro_f1"], metrics["test"]["macro_f1"])
    return output_dir


def get_teacher(profile: Profile | str, label_names=None, seed: int = 0):
    """The fine-tuned teacher in eval mode; offline profiles fine-tune it on first use. A profile's
    `teacher_checkpoint` (a published teacher: hub id or folder) is loaded instead, once checked."""
    profile = get_profile(profile) if isinstance(profile, str) else profile
    label_names = label_names or load_label_names()
    if profile.teacher_checkpoint:
        from kdcourse.publish import load_published_teacher
        return load_published_teacher(profile, label_names)
    path = checkpoint_dir(profile, "teacher")
    if not (path / "config.json").exists():
        if not profile.builds_tiny_models:
            raise FileNotFoundError(f"no fine-tuned teacher at {path}: run `make teacher "
                                    f"PROFILE={profile.name}` (needs the model hub or a local path)")
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):  # parallel tests must not train it twice
            if not (path / "config.json").exists():
                finetune_teacher(profile, seed=seed, output_dir=path)
    return load_teacher(profile, label_names, path)


@dataclass
class TeacherConfig:
    """`make teacher`'s options (`--name value`)."""
    profile: str = field(default="cpu", metadata={"help": "profile name (configs/profiles.toml)"})
    seed: int = field(default=0, metadata={"help": "the new classifier head's weights and the batch order"})
    out_dir: Path | None = field(default=None, metadata={"help": "default: checkpoints/<profile>/teacher"})
    overwrite: bool = field(default=False, metadata={
        "help": "replace a teacher already in the output folder (it is kept as <output folder>.previous)"})
    folds: int | None = field(default=None, metadata={
        "help": "instead: K teachers, each predicting the training fold it did not see (out-of-fold "
                "soft labels, kdcourse.oof)"})


def main(argv=None):
    (args,) = parse_config(TeacherConfig, argv, description="Fine-tune the teacher of a profile.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    profile = get_profile(args.profile)
    logger.info("profile %s: %s", profile.name, json.dumps(profile.to_dict()))
    if args.folds is not None:
        try:
            from kdcourse.oof_train import main_folds      # course staff only: not in the student kit
        except ModuleNotFoundError:
            raise UsageError("--folds trains the out-of-fold teachers, which the course staff make; "
                             "this copy of kdcourse (the student kit) cannot") from None
        return main_folds(profile, args.folds, args.seed, args.overwrite)
    try:
        path = finetune_teacher(profile, seed=args.seed, output_dir=args.out_dir,
                                overwrite=args.overwrite)
    except FileExistsError as err:
        raise SystemExit(str(err)) from None
    metrics = json.loads((path / "metrics.json").read_text())
    print(f"teacher -> {path}\n  validation macro-F1 {metrics['validation']['macro_f1']:.3f}, "
          f"test accuracy {metrics['test']['accuracy']:.3f}, test macro-F1 "
          f"{metrics['test']['macro_f1']:.3f}, {metrics['train_seconds']:.0f} s")


if __name__ == "__main__":
    run_cli(main)
