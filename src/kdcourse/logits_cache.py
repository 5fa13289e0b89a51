"""Cache a model's logits on disk, tied to a fingerprint of what produced them.

The teacher runs once over the training split; its logits are stored as safetensors (no pickle) with
a fingerprint of the data, tokenizer and teacher weights. A cache whose fingerprint differs is
refused, never silently reused, and never deleted: the caller decides.

    fp = logits_fingerprint(data=dataset_fingerprint(ds), tokenizer=tok_fp, teacher=model_fp)
    logits = cached_logits(paths.soft_label_cache("cpu", "train", fp), fp,
                           lambda: collect_teacher_logits(teacher, loader))

The teacher's soft labels of every split, with that naming: kdcourse.soft_labels.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from kdcourse.errors import KDError

logger = logging.getLogger(__name__)


class StaleCacheError(KDError, RuntimeError):
    """A cached file exists but was made from other data, tokenizer or teacher."""


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def logits_fingerprint(**parts) -> str:
    """One short hash of named parts (strings, numbers, lists, dicts)."""
    return _digest(parts)


def model_fingerprint(model) -> str:
    """Hash of a model's config and weights (exact: any changed weight changes it)."""
    digest = hashlib.sha256(model.config.to_json_string().encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_fingerprint(dataset, columns=("complaint_id", "text", "label")) -> str:
    """Hash of the rows that matter, in order (so a reordered split is a different cache)."""
    digest = hashlib.sha256()
    for column in columns:
        if column in dataset.column_names:
            digest.update(json.dumps(list(dataset[column])).encode())
    return digest.hexdigest()[:16]


def soft_label_fingerprint(dataset, tokenizer_fp: str, teacher_fp: str, max_length: int) -> str:
    """What a split's soft labels depend on: its rows (in order), tokenizer, teacher, max length.
    With paths.soft_label_cache it names the split's cache file."""
    return logits_fingerprint(data=dataset_fingerprint(dataset), tokenizer=tokenizer_fp,
                              teacher=teacher_fp, max_length=max_length)


def save_logits(path: str | Path, logits: torch.Tensor, fingerprint: str, **meta) -> Path:
    """Write `logits` [N, C] with its fingerprint; atomic (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    metadata = {"fingerprint": fingerprint, **{k: str(v) for k, v in meta.items()}}
    save_file({"logits": logits.detach().float().cpu().contiguous()}, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def read_fingerprint(path: str | Path) -> str | None:
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("fingerprint")


def load_logits(path: str | Path, fingerprint: str | None = None) -> torch.Tensor:
    """The cached logits; StaleCacheError if `fingerprint` is given and differs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no cached logits at {path}")
    try:
        found = read_fingerprint(path)
        logits = load_file(str(path))["logits"]
    except (SafetensorError, KeyError, OSError, ValueError) as err:
        raise StaleCacheError(f"cached logits {path} are unreadable ({err}); move the file away "
                              "(it is kept, not deleted) and run again to recompute") from err
    if fingerprint is not None and found != fingerprint:
        raise StaleCacheError(
            f"cached logits {path} were made with fingerprint {found}, but the current data, "
            f"tokenizer and teacher give {fingerprint}. Delete or move the file to recompute, or "
            "point to the cache of this teacher.")
    return logits


def move_stale_aside(path: str | Path, fingerprint: str) -> Path | None:
    """If `path` holds logits of another fingerprint, or cannot be read, rename it to
    `*.stale-<its fingerprint>` or `*.stale-unreadable` (`.2`, `.3`, ... rather than overwrite an
    earlier one: kept, never deleted) and return the new path; else None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        found = read_fingerprint(path)
    except (SafetensorError, OSError, ValueError):
        found = "unreadable"
    if found == fingerprint:
        return None
    aside, copy = path.with_name(f"{path.name}.stale-{found}"), 1
    while aside.exists():
        copy += 1
        aside = path.with_name(f"{path.name}.stale-{found}.{copy}")
    path.replace(aside)
    return aside


def adopt_legacy_cache(path: Path, legacy: Path, fingerprint: str) -> bool:
    """Rename `legacy` to `path` if `path` is absent and `legacy` holds `fingerprint`."""
    if path.exists() or not legacy.exists():
        return False
    try:
        found = read_fingerprint(legacy)
    except (SafetensorError, OSError, ValueError):  # unreadable: it stays where it is
        found = "unreadable"
    if found != fingerprint:
        logger.info("cached logits %s are of another fingerprint (%s): kept, not used", legacy, found)
        return False
    legacy.rename(path)
    logger.info("cached logits %s renamed to %s (same fingerprint)", legacy, path)
    return True


def cached_logits(path: str | Path, fingerprint: str, compute: Callable[[], torch.Tensor],
                  **meta) -> torch.Tensor:
    """Load `path` if its fingerprint matches; compute and save it if absent; refuse if stale."""
    path = Path(path)
    if path.exists():
        return load_logits(path, fingerprint)
    logits = compute()
    save_logits(path, logits, fingerprint, **meta)
    return logits
