"""A class the student never sees (Hinton, Vinyals and Dean 2015, section 3: MNIST without the 3s).

Every training example of one class is removed from the students' transfer set; a hard-label and a
distilled student are trained on the rest (same seed, same steps). The hard-label student has no
reason to ever predict the missing class; the distilled one has seen the teacher give it
probability on *other* classes' complaints, and may recognise it. Hinton's fix: raise the omitted
class's logit bias until the student predicts it as often as the teacher does. Here the shift is
chosen on the validation split and applied to the test split, so the test numbers stay honest.

    transfer = without_class(train_data, label_id)           # a datasets.Dataset without the class
    result = omitted_class_result("debt_collection", label_id, logits)   # logits: OmittedLogits
    result.to_json()   # metrics.json's `omitted_class` (one seed)
"""
from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass

import torch


@dataclass
class OmittedLogits:
    """Logits [N, C] of the three models on validation and test, and the true labels [N]."""
    teacher_val: torch.Tensor
    teacher_test: torch.Tensor
    hard_val: torch.Tensor
    hard_test: torch.Tensor
    distilled_val: torch.Tensor
    distilled_test: torch.Tensor
    test_labels: torch.Tensor


@dataclass
class OmittedClassResult:
    label: str
    seed: int
    test_examples: int                   # test complaints of the omitted class
    teacher_recall: float
    hard_recall: float
    distilled_recall: float
    hard_mean_prob: float                # mean probability given to the class on those complaints
    distilled_mean_prob: float
    hard_recall_bias_fixed: float        # recall after the bias shift (chosen on validation)
    distilled_recall_bias_fixed: float
    hard_bias_shift: float
    distilled_bias_shift: float

    def to_json(self) -> dict:
        return asdict(self)


def without_class(dataset, label_id: int):
    """The rows of a datasets.Dataset whose `label` is not `label_id`; ValueError if none is left
    or the class does not occur (a typo in the class name would otherwise remove nothing)."""
    labels = list(dataset["label"])
    if label_id not in labels:
        raise ValueError(f"class {label_id} does not occur in the transfer set: nothing to remove "
                         "(sample caps keep the first rows of a split: raise the cap or pick another class)")
    keep = [i for i, y in enumerate(labels) if y != label_id]
    if not keep:
        raise ValueError(f"removing class {label_id} leaves no training example")
    return dataset.select(keep)


def missing_from(label_id: int, **splits) -> list[str]:
    """Names of the given label lists (e.g. train=[...], test=[...]) in which `label_id` never occurs."""
    return [name for name, labels in splits.items() if label_id not in [int(y) for y in labels]]


def label_index(label: str, label_names) -> int:
    """Index of `label` in `label_names`; ValueError naming the valid labels otherwise."""
    if label not in label_names:
        raise ValueError(f"OMITTED_CLASS {label!r} is not a label; pick one of {list(label_names)}")
    return list(label_names).index(label)


def bias_to_match(logits: torch.Tensor, label_id: int, target_count: int) -> float:
    """The smallest shift of column `label_id` of `logits` [N, C] after which at least
    `target_count` rows predict `label_id` (0.0 if they already do). Row i predicts the class once
    the shift exceeds its margin max_{j != c} z_ij - z_ic, so the shift is the target_count-th
    smallest margin (a hair above it)."""
    target_count = min(max(int(target_count), 0), len(logits))
    if target_count == 0 or int((logits.argmax(-1) == label_id).sum()) >= target_count:
        return 0.0
    others = logits.clone().float()
    others[:, label_id] = float("-inf")
    margins = torch.sort(others.max(-1).values - logits[:, label_id].float()).values
    needed = margins[target_count - 1].item()
    return needed + 1e-4 * max(1.0, abs(needed))


def _recall(logits: torch.Tensor, mask: torch.Tensor, label_id: int, shift: float = 0.0) -> float:
    shifted = logits.clone().float()
    shifted[:, label_id] += shift
    return (shifted[mask].argmax(-1) == label_id).float().mean().item()


def omitted_class_result(label: str, label_id: int, logits: OmittedLogits, seed: int = 0) -> OmittedClassResult:
    """Recall of each model on the omitted class's test complaints, the students' mean probability
    of it there, and their recall after the bias shift that makes each student predict the class,
    on validation, as often as the teacher does."""
    mask = logits.test_labels == label_id
    if not mask.any():
        raise ValueError(f"no test complaint of class {label!r}: cannot measure its recall")
    teacher_count = int((logits.teacher_val.argmax(-1) == label_id).sum())
    shifts = {name: bias_to_match(getattr(logits, f"{name}_val"), label_id, teacher_count)
              for name in ("hard", "distilled")}
    values = {}
    for name in ("hard", "distilled"):
        test = getattr(logits, f"{name}_test")
        values[f"{name}_recall"] = _recall(test, mask, label_id)
        values[f"{name}_mean_prob"] = test.float().softmax(-1)[mask, label_id].mean().item()
        values[f"{name}_recall_bias_fixed"] = _recall(test, mask, label_id, shifts[name])
        values[f"{name}_bias_shift"] = shifts[name]
    return OmittedClassResult(label=label, seed=seed, test_examples=int(mask.sum()),
                              teacher_recall=_recall(logits.teacher_test, mask, label_id), **values)


def summarise(results: list[OmittedClassResult]) -> dict:
    """metrics.json's `omitted_class`: the label, and every number as a list over seeds, with
    `mean` and `std` of each."""
    out = {"label": results[0].label, "seeds": [r.seed for r in results],
           "test_examples": results[0].test_examples}
    keys = [k for k in asdict(results[0]) if k not in ("label", "seed", "test_examples")]
    for key in keys:
        out[key] = [getattr(r, key) for r in results]
    out["mean"] = {k: statistics.fmean(out[k]) for k in keys}
    out["std"] = {k: statistics.stdev(out[k]) if len(out[k]) > 1 else 0.0 for k in keys}
    return out
