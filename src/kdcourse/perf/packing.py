"""Sequence packing for ModernBERT classifiers: no padding, one input shape, no attention masks.

Texts are concatenated into one row of `budget` tokens (first-fit decreasing); rotary positions restart
at each text, attention stays inside each text through the varlen kernel's sequence boundaries
(`cu_seqlens`, the same kwargs transformers uses for packed FlashAttention-2), and each text's
hidden states are mean-pooled on their own, as ModernBERT pools a padded batch. This is how
ModernBERT itself was trained (unpadded); here it is a measured option of `kdcourse.perf.bench`
(`--packed_tokens`), not yet the reference run's batching.

    packs = pack_by_length(lengths, budget=8192)
    batch = PackedCollator(pad_token_id, budget, max_length=512)([examples[i] for i in packs[0]])
    logits = packed_logits(model, batch)     # [texts, num_labels], like model(...).logits
"""
from __future__ import annotations

import torch


def pack_by_length(lengths: list[int], budget: int, max_texts: int | None = None) -> list[list[int]]:
    """Indices grouped into packs of at most `budget` tokens (and `max_texts` texts), longest first,
    each text into the first pack with room (first-fit decreasing: packs come out nearly full)."""
    if max(lengths) > budget:
        raise ValueError(f"a text of {max(lengths)} tokens does not fit a pack of {budget}; "
                         "raise the budget to at least the profile's max_length")
    if max_texts is not None and max_texts < 1:
        raise ValueError(f"max_texts must be >= 1 (or None: no cap), got {max_texts}")
    packs, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((p for p, free in enumerate(room) if free >= lengths[i]
                     and (max_texts is None or len(packs[p]) < max_texts)), None)
        if slot is None:
            packs.append([])
            room.append(budget)
            slot = len(packs) - 1
        packs[slot].append(i)
        room[slot] -= lengths[i]
    return packs


class PackedCollator:
    """Examples (`input_ids`, `label`, optional `teacher_logits`) -> one packed row of `budget` tokens:
    input_ids, position_ids, doc_ids [budget]; cu_seqlens [max_sequences + 1] int32; labels and
    lengths [texts];
    teacher_logits [texts, num_labels]; max_length (an int, the same for every pack).
    The padding tail is cut into sequences of at most `max_length` tokens that pool into a dummy slot,
    and cu_seqlens ends in zero-length sequences: every pack has the same shapes, and the kernel
    writes (and differentiates) every row. `max_texts` caps the texts per pack (default budget // 8,
    texts of 8+ tokens): the varlen kernel launches blocks for every sequence, empty ones too, so at
    32k tokens the default's 4,161 boundaries would be mostly empty launches (pack with the same cap)."""

    def __init__(self, pad_token_id: int, budget: int, max_length: int = 512, max_texts: int | None = None):
        self.pad_token_id, self.budget, self.max_length = pad_token_id, budget, min(max_length, budget)
        self.max_texts = max_texts or budget // 8
        self.max_sequences = self.max_texts + budget // self.max_length + 1  # the texts, then the tail

    def __call__(self, items: list[dict]) -> dict:
        lengths = [len(item["input_ids"]) for item in items]
        if sum(lengths) > self.budget or max(lengths) > self.max_length or len(items) > self.max_texts:
            raise ValueError(f"{len(items)} texts of {sum(lengths)} tokens (longest {max(lengths)}) do not "
                             f"fit a pack of {self.budget} tokens with at most {self.max_texts} texts of up to "
                             f"{self.max_length}; use pack_by_length (same max_texts) and the profile's max_length")
        tail = self.budget - sum(lengths)
        chunks = [self.max_length] * (tail // self.max_length) + ([tail % self.max_length] if tail % self.max_length else [])
        sizes = torch.tensor(lengths + chunks, dtype=torch.long)
        input_ids = torch.full((self.budget,), self.pad_token_id, dtype=torch.long)
        input_ids[: sum(lengths)] = torch.tensor([t for item in items for t in item["input_ids"]])
        position_ids = torch.cat([torch.arange(n) for n in sizes.tolist()])
        owner = torch.arange(len(sizes)).clamp(max=len(items))  # tail chunks pool into slot len(items)
        doc_ids = torch.repeat_interleave(owner, sizes)
        cu = torch.full((self.max_sequences + 1,), self.budget, dtype=torch.int32)
        cu[: len(sizes) + 1] = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)]).int()
        batch = {"input_ids": input_ids, "position_ids": position_ids, "doc_ids": doc_ids, "cu_seqlens": cu,
                 "labels": torch.tensor([item["label"] for item in items]), "lengths": sizes[: len(items)],
                 "max_length": self.max_length}
        if "teacher_logits" in items[0]:
            batch["teacher_logits"] = torch.tensor([item["teacher_logits"] for item in items], dtype=torch.float)
        return batch


def packed_logits(model, batch: dict) -> torch.Tensor:
    """A ModernBertForSequenceClassification (mean pooling; attention "kd_varlen" or
    "flash_attention_2") on a packed row. Returns logits [texts, num_labels]."""
    if model.config.classifier_pooling != "mean":
        raise ValueError("packed_logits pools by mean, as the released ModernBERTs do")
    if model.config._attn_implementation not in ("kd_varlen", "flash_attention_2"):
        raise ValueError(f"packing needs varlen attention (kd_varlen or flash_attention_2), not "
                         f"{model.config._attn_implementation!r}: SDPA would attend across texts")
    cu, longest = batch["cu_seqlens"], batch["max_length"]
    hidden = model.model(input_ids=batch["input_ids"][None], position_ids=batch["position_ids"][None],
                         cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest,
                         max_length_k=longest).last_hidden_state[0]  # [budget, hidden]
    texts = len(batch["labels"])
    sums = hidden.new_zeros(texts + 1, hidden.shape[-1]).index_add(0, batch["doc_ids"], hidden)
    pooled = sums[:texts] / batch["lengths"][:, None].to(hidden.dtype)  # the tail's slot is dropped
    return model.classifier(model.drop(model.head(pooled)))
