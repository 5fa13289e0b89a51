"""Out-of-fold soft labels: K teachers, each predicts the fold of the training split it did not see.

The teacher was fine-tuned on the training complaints, so its soft labels there are in-sample: more
confident and more often right than on unseen complaints, and a student distilled from them inherits
that over-confidence. With K folds, teacher k is fine-tuned (the same recipe as `make teacher`) on
the other K-1 folds and predicts fold k; the K predictions together cover every training complaint
with a teacher that never saw it.

    make teacher ARGS="--folds 3"        # -> checkpoints/<profile>/teacher-oof-k3/{fold-0,...,manifest.json}
    logits = load_oof_logits(profile, tokenized["train"], tokenizer, folds=3)   # [N, C]

The logits are cached as `kdcourse.paths.soft_label_cache(profile, "oof-k<K>-train", fingerprint)`
(`.cache/logits/<profile>/oof-k<K>-train-<fingerprint>.safetensors`, the teacher's soft labels'
naming) under their own fingerprint: the training data, the tokenizer, and the weights files of the
K fold teachers. A set made for other data, an incomplete set (a run stopped after some folds) or a
cache whose stored fingerprint differs is refused with StaleCacheError; the same command again
trains the missing folds. A cache of the earlier fixed name (`oof-k<K>-train.safetensors`) is
renamed to the new one when its fingerprint matches.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch

from kdcourse.logits_cache import (StaleCacheError, adopt_legacy_cache, dataset_fingerprint, load_logits,
                                   logits_fingerprint, save_logits, tokenizer_fingerprint)
from kdcourse import paths
from kdcourse.models import checkpoint_dir
from kdcourse.profiles import Profile

logger = logging.getLogger(__name__)
MANIFEST = "manifest.json"
DROP_COLUMNS = ["complaint_id", "text", "product", "issue", "date_received"]


def oof_dir(profile: Profile, folds: int) -> Path:
    """checkpoints/<profile>/teacher-oof-k<folds>: the fold teachers and their manifest."""
    return checkpoint_dir(profile, f"teacher-oof-k{folds}")


def oof_cache_path(profile: Profile, manifest: dict) -> Path:
    """The cache of a complete fold set (its manifest), under the soft labels' one naming."""
    name, fingerprint = f"oof-k{manifest['folds']}-train", oof_fingerprint(manifest)
    path = paths.soft_label_cache(profile.name, name, fingerprint)
    adopt_legacy_cache(path, path.with_name(f"{name}.safetensors"), fingerprint)
    return path


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
    return save_logits(oof_cache_path(profile, manifest), logits, oof_fingerprint(manifest), folds=folds)


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
    path = oof_cache_path(profile, manifest)
    if not path.exists():
        write_oof_cache(profile, folds)
    return load_logits(path, oof_fingerprint(manifest))
