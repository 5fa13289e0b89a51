"""Out-of-fold soft labels: K teachers, each predicts the fold of the training split it did not see.

The teacher was fine-tuned on the training complaints, so its soft labels there are in-sample: more
confident and more often right than on unseen complaints, and a student distilled from them inherits
that over-confidence. With K folds, teacher k is fine-tuned (the same recipe as `make teacher`) on
the other K-1 folds and predicts fold k; the K predictions together cover every training complaint
with a teacher that never saw it.

    make teacher ARGS="--folds 3"        # -> checkpoints/<profile>/teacher-oof-k3/{fold-0,...,manifest.json}
    logits = load_oof_logits(profile, tokenized["train"], tokenizer, folds=3)   # [N, C]

The logits are cached in `.cache/logits/<profile>/oof-k<K>-train.safetensors` under their own
fingerprint: the training data, the tokenizer, and the weights files of the K fold teachers. A set
made for other data, an incomplete set (a run stopped after some folds) or a cache whose
fingerprint differs is refused with StaleCacheError; the same command again trains the missing folds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import Trainer

from kdcourse.data import PadCollator, load_label_names, load_splits, make_loader, tokenize_splits
from kdcourse.logits_cache import (StaleCacheError, dataset_fingerprint, load_logits, logits_fingerprint,
                                   save_logits, tokenizer_fingerprint)
from kdcourse.metrics import evaluate_logits
from kdcourse.models import checkpoint_dir, load_teacher_init, load_tokenizer
from kdcourse.paths import CACHE_DIR
from kdcourse.profiles import Profile
from kdcourse.utils import set_seed

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
DROP_COLUMNS = ["complaint_id", "text", "product", "issue", "date_received"]


def oof_dir(profile: Profile, folds: int) -> Path:
    """checkpoints/<profile>/teacher-oof-k<folds>: the fold teachers and their manifest."""
    return checkpoint_dir(profile, f"teacher-oof-k{folds}")


def oof_cache_path(profile: Profile, folds: int) -> Path:
    return CACHE_DIR / "logits" / profile.name / f"oof-k{folds}-train.safetensors"


def fold_of_each(labels: list[int], folds: int, seed: int) -> list[int]:
    """Fold index of each training example [N]: stratified (each class spread evenly over the
    folds, in a seeded random order), so every fold teacher sees every class."""
    if folds < 2:
        raise ValueError(f"--folds must be at least 2 (each teacher must leave a fold out), got {folds}")
    generator = torch.Generator().manual_seed(seed)
    assignment = [0] * len(labels)
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        for rank, j in enumerate(torch.randperm(len(members), generator=generator).tolist()):
            assignment[members[j]] = rank % folds
    return assignment


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def oof_fingerprint(manifest: dict) -> str:
    """The cache's fingerprint: training data, tokenizer, max length, seed and every fold's weights."""
    return logits_fingerprint(kind="out-of-fold", data=manifest["data"], tokenizer=manifest["tokenizer"],
                              max_length=manifest["max_length"], seed=manifest["seed"],
                              folds=[manifest["done"][str(k)]["weights"] for k in range(manifest["folds"])])


def _read_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(folder / MANIFEST)  # atomic: a crash leaves the previous, consistent manifest


def predict_in_order(model, dataset, tokenizer, batch_size: int) -> torch.Tensor:
    """Logits [len(dataset), C] in dataset order. Not `Trainer.predict`: with
    train_sampling_strategy="group_by_length", transformers 5.x length-groups its evaluation
    sampler too, so its predictions come back reordered (harmless for metrics computed with its
    own label_ids, wrong for soft labels matched to rows)."""
    device = next(model.parameters()).device
    model.eval()
    chunks = []
    with torch.inference_mode():
        for batch in make_loader(dataset, tokenizer, batch_size=batch_size):
            chunks.append(model(input_ids=batch["input_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device)).logits.float().cpu())
    return torch.cat(chunks)


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


def write_oof_cache(profile: Profile, folds: int) -> Path:
    """Assemble the K held-out predictions into logits [N, C] in training order; cache them."""
    folder = oof_dir(profile, folds)
    manifest = _check_complete(folder, folds)
    parts = [(torch.load(folder / f"fold-{k}" / "held_out_rows.pt"),
              load_logits(folder / f"fold-{k}" / "held_out_logits.safetensors")) for k in range(folds)]
    n = sum(len(rows) for rows, _ in parts)
    logits = torch.empty(n, parts[0][1].shape[1])
    for rows, fold_logits in parts:
        logits[rows] = fold_logits
    return save_logits(oof_cache_path(profile, folds), logits, oof_fingerprint(manifest), folds=folds)


def _check_complete(folder: Path, folds: int) -> dict:
    manifest = _read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"no out-of-fold teachers in {folder}: make them with "
                                f"`make teacher PROFILE={folder.parent.name} ARGS=\"--folds {folds}\"`")
    missing = [k for k in range(folds) if str(k) not in manifest["done"]
               or not (folder / f"fold-{k}" / "model.safetensors").exists()]
    if missing:
        raise StaleCacheError(f"the out-of-fold set in {folder} is partial: folds {missing} of {folds} are "
                              f"missing. `make teacher PROFILE={folder.parent.name} ARGS=\"--folds {folds}\"` "
                              "trains just those")
    for k in range(folds):  # the weights on disk are the ones the cache was made from
        if _file_digest(folder / f"fold-{k}" / "model.safetensors") != manifest["done"][str(k)]["weights"]:
            raise StaleCacheError(f"fold teacher {folder / f'fold-{k}'} was changed after the out-of-fold "
                                  f"set was made. Retrain it: `make teacher ARGS=\"--folds {folds} --overwrite\"`")
    return manifest


def load_oof_logits(profile: Profile, train_dataset, tokenizer, folds: int) -> torch.Tensor:
    """The out-of-fold logits [N, C] of `train_dataset` (the tokenized training split, in order).

    FileNotFoundError (with the command to run) when there is no set; StaleCacheError when the set
    was made for other training data or tokenizer, is partial, or the cache does not match it."""
    folder = oof_dir(profile, folds)
    manifest = _check_complete(folder, folds)
    data, tok = dataset_fingerprint(train_dataset), tokenizer_fingerprint(tokenizer)
    if (manifest["data"], manifest["tokenizer"]) != (data, tok):
        raise StaleCacheError(
            f"the out-of-fold teachers in {folder} were made for other training data or another tokenizer "
            f"(data {manifest['data']}, now {data}; e.g. another MAX_TRAIN_SAMPLES). Use the training split "
            f"they were made for, or remake them: `make teacher ARGS=\"--folds {folds} --overwrite\"`")
    path = oof_cache_path(profile, folds)
    if not path.exists():
        write_oof_cache(profile, folds)
    return load_logits(path, oof_fingerprint(manifest))


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
