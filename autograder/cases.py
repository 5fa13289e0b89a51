"""Build the inputs of a grading case from its plain-JSON description (both sides use this).

The worker builds them to call the student's function; the suites build the very same tensors,
models and loaders (same seeds) to compute the reference. Nothing here imports student code.
"""
from __future__ import annotations

import torch
import torch.nn as nn

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def make_logits(spec: dict) -> torch.Tensor:
    """Seeded logits: {"shape", "seed", "scale"=3, "shift"=0, "dtype"="float32", "constant"=None}."""
    shape = spec["shape"]
    if spec.get("constant") is not None:
        x = torch.full(shape, float(spec["constant"]), dtype=torch.float64)
    else:
        g = torch.Generator().manual_seed(spec["seed"])
        x = torch.randn(shape, generator=g, dtype=torch.float64) * spec.get("scale", 3.0)
        x = x + spec.get("shift", 0.0)
    return x.to(DTYPES[spec.get("dtype", "float32")])


def make_labels(spec: dict) -> torch.Tensor:
    """Seeded class labels: {"n", "classes", "seed"}."""
    g = torch.Generator().manual_seed(spec["seed"])
    return torch.randint(0, spec["classes"], (spec["n"],), generator=g)


class ClassifierOutput:
    """What a Hugging Face classifier returns, as far as the assignment uses it."""

    def __init__(self, logits):
        self.logits = logits

    def __getitem__(self, key):
        return self.logits if key in (0, "logits") else (_ for _ in ()).throw(KeyError(key))


class TinyClassifier(nn.Module):
    """Embedding -> masked mean pool -> dropout -> linear; records its mode at every forward."""

    def __init__(self, vocab: int, dim: int, classes: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, classes)
        self.forward_modes: list[bool] = []

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        self.forward_modes.append(self.training)
        h = self.embed(input_ids)                                  # (B, L, dim)
        mask = attention_mask.unsqueeze(-1).to(h.dtype)            # (B, L, 1)
        pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)    # (B, dim)
        return ClassifierOutput(self.head(self.dropout(pooled)))


def make_model(spec: dict) -> TinyClassifier:
    """{"seed", "vocab"=40, "dim"=12, "classes"=5, "dropout"=0.5, "dtype"="float32", "train"=True}."""
    torch.manual_seed(spec["seed"])
    model = TinyClassifier(spec.get("vocab", 40), spec.get("dim", 12), spec.get("classes", 5),
                           spec.get("dropout", 0.5))
    model = model.to(DTYPES[spec.get("dtype", "float32")])
    return model.train(spec.get("train", True))


def make_examples(spec: dict) -> list[dict]:
    """{"n", "seq_len"=6, "vocab"=40, "classes"=5, "seed", "teacher_scale"=None}: a list of examples.

    With teacher_scale, every example also carries seeded `teacher_logits` [classes].
    """
    g = torch.Generator().manual_seed(spec["seed"])
    n, length, classes = spec["n"], spec.get("seq_len", 6), spec.get("classes", 5)
    ids = torch.randint(1, spec.get("vocab", 40), (n, length), generator=g)
    lengths = torch.randint(2, length + 1, (n,), generator=g)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    labels = torch.randint(0, classes, (n,), generator=g)
    examples = [{"input_ids": ids[i] * mask[i], "attention_mask": mask[i], "labels": labels[i]}
                for i in range(n)]
    if spec.get("teacher_scale") is not None:
        teacher = torch.randn(n, classes, generator=g) * spec["teacher_scale"]
        for example, row in zip(examples, teacher):
            example["teacher_logits"] = row
    return examples


def make_loader(spec: dict) -> torch.utils.data.DataLoader:
    """An in-memory DataLoader in fixed order; its own generator keeps the global RNG untouched."""
    return torch.utils.data.DataLoader(make_examples(spec), batch_size=spec["batch_size"],
                                       shuffle=False, generator=torch.Generator().manual_seed(0))


def make_optimizer(spec: dict, params) -> torch.optim.Optimizer:
    """{"name": "sgd"|"adamw", "lr", "momentum"=0}."""
    if spec["name"] == "sgd":
        return torch.optim.SGD(params, lr=spec["lr"], momentum=spec.get("momentum", 0.0))
    return torch.optim.AdamW(params, lr=spec["lr"], weight_decay=spec.get("weight_decay", 0.01))


def make_scheduler(spec: dict | None, optimizer):
    """None, or {"name": "exp", "gamma"}: the learning rate is multiplied by gamma every step."""
    if spec is None:
        return None
    return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=spec["gamma"])

