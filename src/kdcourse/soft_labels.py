"""Where the teacher's soft labels are made: one pass of the teacher over each split, cached on disk.

    logits, info = teacher_soft_labels(graded.collect_teacher_logits, teacher, tokenized, tokenizer,
                                       profile, device)          # {split: [N, C]}, timings
    path, fingerprint = soft_label_cache("train", profile, tokenized["train"], tokenizer_fp, teacher_fp)

The reference run (`make reference`) and `train_distill.py` both come here. The logits go through
the solution notebook's graded `collect_teacher_logits` (passed in as `collect`), never a copy.

A cache is `kdcourse.paths.soft_label_cache(profile, split, fingerprint)`, i.e.
`.cache/logits/<profile>/<split>-<fingerprint>.safetensors`, the name the notebook's Part C cell
builds too; the fingerprint is `kdcourse.logits_cache.soft_label_fingerprint` (both are in the
student kit, this module is not). It covers the split's rows, the tokenizer, the teacher's weights
and the max length, and is stored inside the file as well: a file whose stored fingerprint differs
from its name's (copied or damaged by hand) is refused with StaleCacheError, never reused.
Earlier versions of the reference named the cache `reference-<split>.safetensors`; such a file is
renamed to the new name when its fingerprint matches, and left where it is otherwise.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from kdcourse import paths
from kdcourse.data import SPLITS, make_loader
from kdcourse.distributed import oom_hint
from kdcourse.logits_cache import (StaleCacheError, adopt_legacy_cache, cached_logits, model_fingerprint,
                                   move_stale_aside, soft_label_fingerprint, tokenizer_fingerprint)
from kdcourse.profiles import Profile
from kdcourse.utils import autocast

logger = logging.getLogger(__name__)


def legacy_soft_label_cache(profile: str, split: str) -> Path:
    """The fixed name earlier reference runs gave a split's cache (read once, then renamed)."""
    return paths.CACHE_DIR / "logits" / profile / f"reference-{split}.safetensors"


def soft_label_cache(split: str, profile: Profile, dataset, tokenizer_fp: str, teacher_fp: str,
                     recompute_stale: bool = False) -> tuple[Path, str]:
    """The cache file of a split and the fingerprint it must carry. `recompute_stale` moves a file
    of that name whose stored fingerprint differs aside (`*.stale-<fingerprint>`), to recompute."""
    fingerprint = soft_label_fingerprint(dataset, tokenizer_fp, teacher_fp, profile.max_length)
    path = paths.soft_label_cache(profile.name, split, fingerprint)
    adopt_legacy_cache(path, legacy_soft_label_cache(profile.name, split), fingerprint)
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


@dataclass(frozen=True)
class SoftLabelInfo:
    """metrics.json's `soft_labels`: the train split's cache and the cost of the pass."""
    path: str            # the train split's cache file
    fingerprint: str     # the fingerprint it carries
    cached: bool         # every split came from the cache
    seconds: float       # time of the teacher's passes (0 when cached)
    tokens: int          # tokens the passes read

    def to_dict(self) -> dict:
        return {"cached": self.cached, "seconds": self.seconds, "tokens": self.tokens, "path": self.path,
                "fingerprint": self.fingerprint,
                "tokens_per_s": self.tokens / self.seconds if self.seconds else None}


def teacher_soft_labels(collect: Callable, teacher, tokenized, tokenizer, profile: Profile, device: str,
                        autocast_dtype=None, recompute_stale: bool = False,
                        ) -> tuple[dict[str, torch.Tensor], SoftLabelInfo]:
    """{split: teacher logits [N, C]} for every split, each loaded from its cache or computed once
    (inference mode, the eval batch size) and saved; and what that cost."""
    teacher_fp, tokenizer_fp = model_fingerprint(teacher), tokenizer_fingerprint(tokenizer)
    logits, passes, files = {}, [], {}   # passes: (seconds, tokens) of each split computed here
    for split in SPLITS:
        path, fingerprint = soft_label_cache(split, profile, tokenized[split], tokenizer_fp, teacher_fp,
                                             recompute_stale)
        files[split] = (path, fingerprint)

        def compute(split=split):
            start = time.perf_counter()
            with oom_hint(profile.eval_batch_size, profile.max_length, "the soft-label pass"):
                out = predict(collect, teacher, tokenized[split], tokenizer, profile.eval_batch_size,
                              device, autocast_dtype)
            passes.append((time.perf_counter() - start, sum(tokenized[split]["length"])))
            return out

        logits[split] = _load(path, fingerprint, compute, split, profile)
    path, fingerprint = files["train"]
    return logits, SoftLabelInfo(path=str(path), fingerprint=fingerprint, cached=not passes,
                                 seconds=sum((s for s, _ in passes), 0.0), tokens=sum(t for _, t in passes))


def _load(path: Path, fingerprint: str, compute, split: str, profile: Profile) -> torch.Tensor:
    try:
        return cached_logits(path, fingerprint, compute, split=split, teacher=profile.teacher)
    except StaleCacheError as err:
        raise StaleCacheError(f"{err} Or run again with --recompute_stale_cache true.") from None
