"""Load the complaint splits, tokenize them, and batch them with as little padding as possible.

    splits = load_splits()                                  # DatasetDict, label is a ClassLabel
    tokenized = tokenize_splits(splits, tokenizer, max_length=128)
    loader = make_loader(tokenized["train"], tokenizer, batch_size=32, shuffle=True)
    batch = next(iter(loader))  # {"input_ids": [B, L], "attention_mask": [B, L], "labels": [B]}

Batches are dicts of tensors: `input_ids` and `attention_mask` `[batch, longest_in_batch]`, `labels`
`[batch]`, and, after `with_teacher_logits`, `teacher_logits` `[batch, num_classes]` float32.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from kdcourse.paths import DATA_DIR

# `datasets` is imported where it is used (here for annotations only), so batching (PadCollator,
# LengthGroupedBatchSampler) also works where it is not installed (the GPU benchmark image).
if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

# The splits and the columns of every split's parquet file (kdcourse.data_build writes them).
SPLITS = ("train", "validation", "test")
COLUMNS = ["complaint_id", "text", "label", "product", "issue", "date_received"]


def load_label_names(data_dir: str | Path | None = None) -> list[str]:
    """Label names in id order, from `<data_dir>/labels.json`."""
    path = Path(data_dir or DATA_DIR / "cfpb") / "labels.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make data` to rebuild the splits")
    return json.loads(path.read_text())


def load_splits(data_dir: str | Path | None = None, max_samples: dict | None = None) -> DatasetDict:
    """The train/validation/test splits as a `DatasetDict` with a `ClassLabel` `label` column.

    `max_samples` ({"train": 500}) keeps the first n rows of a split, for quick runs.
    """
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    data_dir = Path(data_dir or DATA_DIR / "cfpb")
    names = load_label_names(data_dir)
    features = Features({column: ClassLabel(names=names) if column == "label" else Value("string")
                         for column in COLUMNS})
    splits = {}
    for split in SPLITS:
        path = data_dir / f"{split}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `make data` to rebuild the splits")
        frame = pd.read_parquet(path)
        missing = set(COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"{path} lacks columns {sorted(missing)} (found "
                             f"{sorted(frame.columns)}); rebuild it with `make data`")
        unknown = set(frame["label"]) - set(names)
        if unknown:
            raise ValueError(f"{path} has labels {sorted(unknown)} not in labels.json {names}")
        cap = (max_samples or {}).get(split)
        frame = frame[COLUMNS].head(cap) if cap else frame[COLUMNS]
        splits[split] = Dataset.from_pandas(frame, features=features, preserve_index=False)
    return DatasetDict(splits)


def tokenize_splits(splits: DatasetDict, tokenizer, max_length: int) -> DatasetDict:
    """Add `input_ids` (truncated to `max_length`, unpadded) and `length` to every split."""

    def encode(batch):
        encoded = tokenizer(batch["text"], truncation=True, max_length=max_length)
        return {"input_ids": encoded["input_ids"],
                "length": [len(ids) for ids in encoded["input_ids"]]}

    return splits.map(encode, batched=True, desc="tokenize")


def with_teacher_logits(dataset: Dataset, teacher_logits: torch.Tensor) -> Dataset:
    """`dataset` plus a `teacher_logits` column; `teacher_logits`: [len(dataset), num_classes]."""
    if len(teacher_logits) != len(dataset):
        raise ValueError(f"teacher_logits has {len(teacher_logits)} rows but the dataset has "
                         f"{len(dataset)}: were they collected on another split or sample cap?")
    if "teacher_logits" in dataset.column_names:
        dataset = dataset.remove_columns("teacher_logits")
    return dataset.add_column("teacher_logits", teacher_logits.float().tolist())


class PadCollator:
    """Pads each batch only to its own longest sequence (dynamic padding).

    Items: dicts with `input_ids` (list[int]), `label` (int) and optionally `teacher_logits`.
    Returns `input_ids`, `attention_mask` [B, L], `labels` [B] and `teacher_logits` [B, C].
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of  # 8 suits tensor cores on GPU

    def padded_length(self, longest: int) -> int:
        """The length a batch whose longest text has `longest` tokens is padded to."""
        multiple = self.pad_to_multiple_of
        return -(-longest // multiple) * multiple if multiple else longest

    def __call__(self, items: list[dict]) -> dict:
        longest = self.padded_length(max(len(item["input_ids"]) for item in items))
        input_ids = torch.full((len(items), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(items), longest), dtype=torch.long)
        for row, item in enumerate(items):
            ids = torch.as_tensor(item["input_ids"], dtype=torch.long)
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask,
                 "labels": torch.tensor([item["label"] for item in items], dtype=torch.long)}
        if "teacher_logits" in items[0]:
            batch["teacher_logits"] = torch.tensor([item["teacher_logits"] for item in items],
                                                   dtype=torch.float32)
        return batch


class LengthGroupedBatchSampler(torch.utils.data.Sampler):
    """Batches of similar length, in random order: little padding, still shuffled.

    Each epoch: shuffle all indices, cut them into mega-batches of `batch_size * group_size`,
    sort each mega-batch by length, cut it into batches, then shuffle the batches.
    """

    def __init__(self, lengths, batch_size: int, group_size: int = 50, seed: int = 0,
                 drop_last: bool = False):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.group_size = batch_size, group_size
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        mega = self.batch_size * self.group_size
        batches = []
        for start in range(0, len(order), mega):
            group = order[start:start + mega]
            group = group[np.argsort(-self.lengths[group], kind="stable")]
            batches += [group[i:i + self.batch_size].tolist()
                        for i in range(0, len(group), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self):
        batches = self.batches()
        self.epoch += 1  # a fresh order next time, without the caller calling set_epoch
        return iter(batches)

    def __len__(self):
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full + (0 if self.drop_last or not rest else 1)


def make_loader(dataset: Dataset, tokenizer=None, batch_size: int = 32, shuffle: bool = False,
                group_by_length: bool = True, seed: int = 0, pad_token_id: int | None = None,
                num_workers: int = 0, pin_memory: bool = False,
                pad_to_multiple_of: int | None = None) -> DataLoader:
    """A DataLoader of padded batches over a tokenized split.

    shuffle=False keeps dataset order (needed by `collect_teacher_logits`); shuffle=True with
    group_by_length batches similar lengths together in a random order. Batches are padded to their
    longest text, rounded up to `pad_to_multiple_of` if given (fewer shapes for torch.compile).
    """
    if pad_token_id is None:
        if tokenizer is None or tokenizer.pad_token_id is None:
            raise ValueError("make_loader needs a tokenizer with a pad token, or pad_token_id")
        pad_token_id = tokenizer.pad_token_id
    columns = [c for c in ("input_ids", "label", "teacher_logits") if c in dataset.column_names]
    if "input_ids" not in columns:
        raise ValueError("dataset has no input_ids: tokenize it first with tokenize_splits")
    data = dataset.select_columns(columns)
    collate = PadCollator(pad_token_id, pad_to_multiple_of)
    common = dict(collate_fn=collate, num_workers=num_workers, pin_memory=pin_memory)
    if shuffle and group_by_length:
        sampler = LengthGroupedBatchSampler(dataset["length"], batch_size, seed=seed)
        return DataLoader(data, batch_sampler=sampler, **common)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator, **common)

