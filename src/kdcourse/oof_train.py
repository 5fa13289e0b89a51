"""Training the out-of-fold teachers (`make teacher ARGS="--folds K"`): course staff only.

Kept apart from `kdcourse.oof` (the bookkeeping and `load_oof_logits`, which the notebook uses):
the student kit ships what the notebook imports, and `predict_in_order`, an in-order loop that
collects a model's logits, would answer Part C. The kit builder never ships this module.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer

from kdcourse.data import PadCollator, load_label_names, load_splits, make_loader, tokenize_splits
from kdcourse.logits_cache import dataset_fingerprint, save_logits, tokenizer_fingerprint
from kdcourse.metrics import evaluate_logits
from kdcourse.models import load_teacher_init, load_tokenizer
from kdcourse.oof import (DROP_COLUMNS, _file_digest, _read_manifest, _write_manifest, fold_of_each,
                          oof_dir, write_oof_cache)
from kdcourse.profiles import Profile
from kdcourse.utils import set_seed

logger = logging.getLogger(__name__)


def predict_in_order(model, dataset, tokenizer, batch_size: int) -> torch.Tensor:
    """Logits [len(dataset), C] in dataset order, through the solution notebook's
    `collect_teacher_logits` (the reference run's soft labels come from it too). Not
    `Trainer.predict`: with train_sampling_strategy="group_by_length", transformers 5.x
    length-groups its evaluation sampler too, so its predictions come back reordered (harmless for
    metrics computed with its own label_ids, wrong for soft labels matched to rows)."""
    from kdcourse.notebook import load_graded_functions
    from kdcourse.paths import SOLUTION_NOTEBOOK
    collect = load_graded_functions(SOLUTION_NOTEBOOK, ["collect_teacher_logits"]).collect_teacher_logits
    device = str(next(model.parameters()).device)
    return collect(model, make_loader(dataset, tokenizer, batch_size=batch_size), device)


def _train_fold(profile, tokenized, tokenizer, label_names, held_out: list[int], seed: int, fold_dir: Path):
    """Fine-tune one teacher on the training rows not in `held_out`; save it to `fold_dir`; return
    its logits [len(held_out), C] on the held-out rows and its validation metrics."""
    from kdcourse.teacher import _compute_metrics, training_arguments  # the `make teacher` recipe
    held = set(held_out)
    train_rows = [i for i in range(len(tokenized["train"])) if i not in held]
    set_seed(seed)
    model = load_teacher_init(profile, label_names, tokenizer, seed=seed)
    fold_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=fold_dir.parent) as work:
        trainer = Trainer(model=model, args=training_arguments(profile, work, seed),
                          train_dataset=tokenized["train"].select(train_rows),
                          eval_dataset=tokenized["validation"],
                          data_collator=PadCollator(tokenizer.pad_token_id), compute_metrics=_compute_metrics)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        logits = predict_in_order(trainer.model, tokenized["train"].select(held_out), tokenizer,
                                  profile.eval_batch_size)
        validation = trainer.predict(tokenized["validation"])
        staging = Path(work) / "final"
        trainer.save_model(staging)
        shutil.rmtree(fold_dir, ignore_errors=True)  # a fold without a manifest entry is incomplete
        shutil.move(str(staging), fold_dir)
    metrics = evaluate_logits(validation.predictions, validation.label_ids)
    return logits, {"train_seconds": seconds, "validation_macro_f1": metrics["macro_f1"]}


def train_fold_teachers(profile: Profile, folds: int, seed: int = 0, overwrite: bool = False) -> Path:
    """Train the fold teachers that are missing, then write the out-of-fold cache; returns it.

    A set made for other data, tokenizer or seed is refused with FileExistsError (hours of GPU
    time), unless `overwrite`: it is then moved to `<folder>.previous`."""
    folder = oof_dir(profile, folds)
    label_names = load_label_names()
    splits = load_splits(max_samples={"train": profile.max_train_samples,
                                      "validation": profile.max_eval_samples, "test": profile.max_eval_samples})
    tokenizer = load_tokenizer(profile)
    tokenized = tokenize_splits(splits, tokenizer, profile.max_length)
    wanted = {"folds": folds, "seed": seed, "data": dataset_fingerprint(tokenized["train"]),
              "tokenizer": tokenizer_fingerprint(tokenizer), "max_length": profile.max_length}
    tokenized = tokenized.remove_columns(DROP_COLUMNS)
    manifest = _read_manifest(folder)
    if manifest and {k: manifest.get(k) for k in wanted} != wanted:
        if not overwrite:
            raise FileExistsError(
                f"{folder} holds fold teachers made for other data, tokenizer or seed ({manifest.get('data')} "
                f"vs {wanted['data']}). To replace them: add --overwrite (the old set is kept as "
                f"{folder.name}.previous).")
        previous = folder.with_name(folder.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        folder.rename(previous)
        manifest = None
    manifest = manifest or {**wanted, "done": {}}
    folder.mkdir(parents=True, exist_ok=True)
    assignment = fold_of_each(list(splits["train"]["label"]), folds, seed)
    for k in range(folds):
        if str(k) in manifest["done"] and (folder / f"fold-{k}" / "model.safetensors").exists():
            logger.info("fold %d of %d: already trained, kept", k, folds)
            continue
        held_out = [i for i, f in enumerate(assignment) if f == k]
        logger.info("fold %d of %d: fine-tuning on %d complaints, predicting %d", k, folds,
                    len(assignment) - len(held_out), len(held_out))
        logits, info = _train_fold(profile, tokenized, tokenizer, label_names, held_out, seed, folder / f"fold-{k}")
        save_logits(folder / f"fold-{k}" / "held_out_logits.safetensors", logits, "fold", fold=k)
        torch.save(torch.tensor(held_out), folder / f"fold-{k}" / "held_out_rows.pt")
        info["weights"] = _file_digest(folder / f"fold-{k}" / "model.safetensors")
        manifest["done"][str(k)] = info
        _write_manifest(folder, manifest)  # a stopped run keeps the folds it finished
    return write_oof_cache(profile, folds)


def main_folds(profile: Profile, folds: int, seed: int, overwrite: bool) -> None:
    """`make teacher ARGS="--folds K"`: train the missing fold teachers, write the cache, report."""
    try:
        path = train_fold_teachers(profile, folds, seed=seed, overwrite=overwrite)
    except (FileExistsError, ValueError) as err:
        raise SystemExit(str(err)) from None
    manifest = _read_manifest(oof_dir(profile, folds))
    scores = ", ".join(f"{manifest['done'][str(k)]['validation_macro_f1']:.3f}" for k in range(folds))
    seconds = sum(manifest["done"][str(k)]["train_seconds"] for k in range(folds))
    print(f"{folds} out-of-fold teachers -> {oof_dir(profile, folds)}\n  validation macro-F1 {scores}; "
          f"{seconds:.0f} s of training\n  out-of-fold soft labels -> {path}")
