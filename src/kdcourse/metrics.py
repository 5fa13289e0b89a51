"""Evaluation from logits: one call returns every number the assignment reports.

    metrics = evaluate_logits(student_logits, labels, teacher_logits=teacher_logits,
                              label_names=names)
    metrics["macro_f1"], metrics["agreement"], metrics["ece"]

Shapes: `logits`, `teacher_logits` `[N, num_classes]`; `labels` `[N]` with `0 <= label < num_classes`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix, f1_score


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> float:
    """ECE: |accuracy - confidence| averaged over equal-width confidence bins, weighted by size.

    `probs` [N, C] rows sum to 1; `labels` [N].
    """
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            ece += in_bin.float().mean().item() * gap.item()
    return float(ece)


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 15) -> dict:
    """Per-bin mean confidence, accuracy and count, for a reliability diagram."""
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == labels).float()
    index = torch.clamp((confidence * n_bins).ceil().long() - 1, 0, n_bins - 1)
    count = torch.bincount(index, minlength=n_bins).float()
    safe = count.clamp(min=1)
    return {"confidence": (torch.bincount(index, confidence, n_bins) / safe).tolist(),
            "accuracy": (torch.bincount(index, correct, n_bins) / safe).tolist(),
            "count": count.long().tolist(), "edges": torch.linspace(0, 1, n_bins + 1).tolist()}


def kl_to_teacher(logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean over examples of KL(softmax(teacher) || softmax(student)), in nats, at T=1."""
    return float(F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(teacher_logits.float(), -1),
                          log_target=True, reduction="batchmean"))


def evaluate_logits(logits, labels, teacher_logits=None, label_names=None, n_bins: int = 15) -> dict:
    """Accuracy, macro-F1, per-class F1, confusion matrix, NLL, ECE, and, given teacher logits,
    agreement (same argmax) and mean KL to the teacher. Plain floats and lists (JSON-ready)."""
    logits, labels = _as_tensor(logits).float(), _as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits [N, C] and labels [N], got {list(logits.shape)} and "
                         f"{list(labels.shape)}")
    num_classes = logits.shape[1]
    names = list(label_names) if label_names is not None else [str(i) for i in range(num_classes)]
    predicted = logits.argmax(-1)
    probs = logits.softmax(-1)
    per_class = f1_score(labels, predicted, labels=range(num_classes), average=None, zero_division=0)
    metrics = {
        "n": len(labels),
        "accuracy": float((predicted == labels).float().mean()),
        "macro_f1": float(per_class.mean()),
        "per_class_f1": dict(zip(names, map(float, per_class))),
        "nll": float(F.cross_entropy(logits, labels)),
        "ece": expected_calibration_error(probs, labels, n_bins),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=range(num_classes)).tolist(),
    }
    if teacher_logits is not None:
        teacher_logits = _as_tensor(teacher_logits).float()
        metrics["agreement"] = float((predicted == teacher_logits.argmax(-1)).float().mean())
        metrics["kl_to_teacher"] = kl_to_teacher(logits, teacher_logits)
    return metrics


def metrics_by_group(logits, labels, groups, teacher_logits=None, min_size: int = 20) -> dict:
    """`evaluate_logits` headline numbers per group (e.g. CFPB product), for groups >= min_size."""
    logits, labels = _as_tensor(logits), _as_tensor(labels)
    groups = np.asarray(groups)
    out = {}
    for group in sorted(set(groups.tolist())):
        mask = torch.as_tensor(groups == group)
        if int(mask.sum()) < min_size:
            continue
        teacher = None if teacher_logits is None else _as_tensor(teacher_logits)[mask]
        m = evaluate_logits(logits[mask], labels[mask], teacher)
        out[group] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "agreement") if k in m}
    return out


def class_similarity(teacher_logits, labels, num_classes: int, temperature: float = 1.0):
    """Averaged soft labels: row c is the mean of softmax(teacher/T) over examples of class c.

    Returns [num_classes, num_classes]; off-diagonal mass is the teacher's "dark knowledge".
    """
    probs = (_as_tensor(teacher_logits).float() / temperature).softmax(-1)
    labels = _as_tensor(labels).long()
    sums = torch.zeros(num_classes, num_classes).index_add_(0, labels, probs)
    return sums / torch.bincount(labels, minlength=num_classes).clamp(min=1).unsqueeze(1)
