"""The benchmarks' synthetic workload: random-weight ModernBERT models at a profile's shapes (the
released base/large shapes when the profile names hub models: no download) and random token ids
with CFPB-like lengths. Imports nothing from `datasets`.

    config = bench_model_config(get_profile("gpu"), "student")     # ModernBERT-base's shape
    model = build_model(config, "cuda")
    examples = random_examples(TRAIN_TEXTS, 512, MEDIAN_LENGTH, config.vocab_size, config.num_labels)
"""
from __future__ import annotations

import math

import torch

from kdcourse.models import MODERNBERT, MODERNBERT_SHARED, expand_released

# Defaults of `make bench` and `make traffic`, which must time the same batches.
MEDIAN_LENGTH = 180  # near the CFPB narratives' median length in tokens (data/README.md: 184 in the cpu profile's BPE)
TRAIN_TEXTS = 7672  # texts of one epoch of the CFPB training split
PAD_TO_MULTIPLE_OF = 8  # padded lengths are rounded up to this (the reference run's collator)


def bench_model_config(profile, role: str, num_labels: int = 8, attention: str = "auto"):
    """A ModernBertConfig for the profile's teacher or student: the released shape for hub models,
    the profile's tiny shape otherwise (vocab from the profile; no tokenizer needed)."""
    from transformers import ModernBertConfig

    from kdcourse.models import resolve_attention
    overrides = profile.teacher_config if role == "teacher" else profile.student_config
    name = profile.teacher if role == "teacher" else profile.student
    if overrides:
        values = dict(MODERNBERT_SHARED, vocab_size=profile.vocab_size, pad_token_id=0, bos_token_id=2,
                      eos_token_id=3, cls_token_id=2, sep_token_id=3,
                      local_attention=max(128, 2 * profile.max_length)) | expand_released(overrides)
    else:
        values = dict(MODERNBERT_SHARED, **MODERNBERT["large" if "large" in name.lower() else "base"])
    config = ModernBertConfig(num_labels=num_labels, **values)
    config._attn_implementation = resolve_attention(attention)
    return config


def build_model(config, device: str, seed: int = 0):
    """Random init straight on the device (no CPU init of the teacher first)."""
    from transformers import AutoModelForSequenceClassification
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForSequenceClassification.from_config(
            config, attn_implementation=config._attn_implementation)


def random_examples(n: int, max_length: int, median_length: int, vocab_size: int, num_labels: int,
                    seed: int = 0) -> list[dict]:
    """`n` unpadded examples: token ids, a label and teacher logits [num_labels], log-normal lengths
    around `median_length`, clipped to [8, max_length]."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.exp(math.log(median_length) + 0.7 * torch.randn(n, generator=g))
    lengths = lengths.round().clamp(8, max_length).long().tolist()
    return [{"input_ids": torch.randint(5, vocab_size, (length,), generator=g).tolist(),
             "label": int(torch.randint(0, num_labels, (1,), generator=g)),
             "teacher_logits": (3 * torch.randn(num_labels, generator=g)).tolist()} for length in lengths]
