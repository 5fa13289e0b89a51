"""Model profiles: which teacher, student and tokenizer, at what length, batch size and precision.

Profiles live in `configs/profiles.toml` (and, for your own, a file named by $KD_PROFILES). Select one
by name everywhere: `get_profile("cpu")`, `--profile gpu`, `make reference PROFILE=gpu`.

    >>> get_profile("cpu").max_length
    128
"""
from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from kdcourse.errors import UnknownProfileError, UsageError
from kdcourse.paths import PROFILES_FILE


@dataclass(frozen=True)
class Profile:
    name: str
    teacher: str  # hub id or local path; with `teacher_config`, the name of a random-init model
    student: str  # same, for the student
    tokenizer: str  # hub id, local path, or "tiny" (BPE trained on the training split)
    max_length: int = 128  # tokens per text after truncation
    train_batch_size: int = 32
    eval_batch_size: int = 128  # inference-only passes (soft labels, evaluation)
    teacher_epochs: int = 3
    student_epochs: int = 3
    teacher_lr: float = 3e-5
    student_lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    precision: str = "fp32"  # "fp32" or "bf16" (autocast on CUDA)
    vocab_size: int = 8192  # only for tokenizer = "tiny"
    max_train_samples: int | None = None  # cap for quick runs; None = the whole split
    max_eval_samples: int | None = None
    teacher_config: dict = field(default_factory=dict)  # ModernBertConfig overrides (random init)
    student_config: dict = field(default_factory=dict)
    # A teacher published by `make publish-teacher` (hub id or folder): get_teacher loads it,
    # checked against this profile's labels, data and tokenizer, instead of fine-tuning one.
    teacher_checkpoint: str = ""
    description: str = ""

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise UsageError(f"profile {self.name!r}: precision must be 'fp32' or 'bf16', "
                             f"got {self.precision!r}")
        if self.max_length <= 0:
            raise UsageError(f"profile {self.name!r}: max_length must be > 0, got {self.max_length}")

    @property
    def builds_tiny_models(self) -> bool:
        """True when the models are random-init ModernBERTs built here (no download)."""
        return bool(self.teacher_config or self.student_config)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _read_tables(extra: str | os.PathLike | None = None) -> dict:
    tables = {}
    paths = [PROFILES_FILE] + [Path(p) for p in (os.environ.get("KD_PROFILES"), extra) if p]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"profiles file {path} does not exist (set by $KD_PROFILES?)")
        with open(path, "rb") as f:
            tables.update(tomllib.load(f))
    return tables


def _resolve(name: str, tables: dict, seen: tuple = ()) -> dict:
    if name not in tables:
        raise UnknownProfileError(f"unknown profile {name!r}; known profiles: {', '.join(sorted(tables))}. "
                       f"Add one to {PROFILES_FILE} or $KD_PROFILES.")
    if name in seen:
        raise UsageError(f"profile {name!r} extends itself through {' -> '.join(seen)}")
    table = dict(tables[name])
    parent = table.pop("extends", None)
    if parent is None:
        return table
    merged = _resolve(parent, tables, seen + (name,))
    merged.pop("description", None)
    merged.update(table)
    return merged


def get_profile(name: str | Profile = "cpu", extra=None, **overrides) -> Profile:
    """The profile called `name`, with `overrides` (e.g. max_train_samples=500) applied."""
    if isinstance(name, Profile):
        return dataclasses.replace(name, **overrides)
    values = _resolve(name, _read_tables(extra))
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(Profile)}
    unknown = set(values) - known
    if unknown:
        raise UsageError(f"profile {name!r} has unknown keys {sorted(unknown)}; known keys: "
                         f"{sorted(known - {'name'})}")
    return Profile(name=name, **values)
