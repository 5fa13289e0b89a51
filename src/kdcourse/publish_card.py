"""The model card (README.md) of a published teacher, in the Hugging Face card conventions:
YAML metadata (license, language, library_name, pipeline_tag, datasets, metrics, model-index)
written by huggingface_hub's own ModelCardData, then data, labels, recipe, metrics, intended use
and limitations."""
from __future__ import annotations

from kdcourse.profiles import Profile

DATASET = "CFPB consumer complaints"
DATASET_ID = "cfpb-consumer-complaints"   # not a Hub dataset: the course builds it (make data)
LICENSE = "apache-2.0"                    # ModernBERT's license; the CFPB data is public domain


def _metadata(profile: Profile, metrics: dict) -> str:
    from huggingface_hub import EvalResult, ModelCardData
    test = metrics["test"]
    results = [EvalResult(task_type="text-classification", dataset_type=DATASET_ID,
                          dataset_name=f"{DATASET} (test split)", dataset_split="test",
                          metric_type=kind, metric_name=name, metric_value=round(test[key], 4),
                          metric_args=args)
               for kind, name, key, args in (("accuracy", "Test accuracy", "accuracy", None),
                                             ("f1", "Test macro-F1", "macro_f1", {"average": "macro"}))]
    data = ModelCardData(
        language="en", license=LICENSE, library_name="transformers",
        pipeline_tag="text-classification", datasets=[DATASET_ID], metrics=["accuracy", "f1"],
        base_model=None if profile.builds_tiny_models else profile.teacher,
        tags=["knowledge-distillation", "teacher", "modernbert"],
        model_name=f"week6-teacher-{profile.name}", eval_results=results)
    return data.to_yaml()


def _table(rows) -> str:
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in rows)


def model_card(profile: Profile, metrics: dict, fingerprint: dict) -> str:
    """README.md of dist/teacher-<profile>/: `metrics` is the teacher's metrics.json,
    `fingerprint` what publish.fingerprint returns."""
    labels = fingerprint["labels"]
    body = "a random-init ModernBERT built by the course" if profile.builds_tiny_models else profile.teacher
    caps = (f"the first {profile.max_train_samples} training and {profile.max_eval_samples} "
            "evaluation rows" if profile.max_train_samples else "the full splits")
    val, test = metrics["validation"], metrics["test"]
    return f"""---
{_metadata(profile, metrics)}
---

# Week-6 distillation teacher (`{profile.name}` profile)

The teacher of the course's knowledge-distillation assignment: {body}, fine-tuned to classify
{DATASET} into the {len(labels)} issue categories below. Students load it instead of fine-tuning
it themselves; its logits on the training split are the soft labels they distil into a smaller
student.

## Data

{DATASET} (public domain, consumerfinance.gov), as the course repo builds it (`make data`):
train / validation / test splits, {caps}, texts truncated to {profile.max_length} tokens.
Fingerprints of the rows used (complaint id, text, label), which the loader checks:

{_table([("split", "fingerprint"), ("---", "---"), *fingerprint["data"].items()])}

Tokenizer fingerprint `{fingerprint["tokenizer"]}`; weights fingerprint `{fingerprint["teacher"]}`.

## Labels

{_table([("id", "label"), ("---", "---"), *enumerate(labels)])}

The same map is in `label_map.json` and the config's `id2label`.

## Training recipe

Plain cross-entropy fine-tuning with the Hugging Face `Trainer` (`python -m kdcourse.teacher
--profile {profile.name}`): {profile.teacher_epochs} epoch(s), learning rate {profile.teacher_lr:g}
(linear decay, warmup ratio {profile.warmup_ratio:g}), weight decay {profile.weight_decay:g}, batch size
{profile.train_batch_size}, precision {profile.precision}, seed {metrics.get("seed", 0)}; the epoch with the best
validation macro-F1 is kept. {metrics.get("params", 0) / 1e6:.1f}M parameters, {metrics.get("train_seconds", 0):.0f} s of training.

## Metrics

{_table([("split", "accuracy", "macro-F1", "NLL", "ECE"), ("---", "---", "---", "---", "---"),
         *[(name, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['nll']:.3f}", f"{m['ece']:.3f}")
           for name, m in (("validation", val), ("test", test))]])}

Full metrics (per-class F1, confusion matrix) are in `metrics.json`.

## Intended use

The soft labels of the Week-6 assignment. In the course repo or the student kit, a profile with

```toml
[my-course]
extends = "{profile.name}"
teacher_checkpoint = "<this folder, or its Hub id>"
```

makes `get_teacher` load this teacher, after checking that its label map, data and tokenizer
fingerprints match the student's; a mismatch is refused with what differs.

## Limitations

- Trained on US consumer complaints in English, labelled from the issue the consumer chose:
  labels are noisy and the classes imbalanced; not for routing or judging real complaints.
- Its soft labels fit only the data and tokenizer above; the loader refuses others.
- The offline profiles (`cpu`, `smoke`) are tiny models trained from scratch on few rows: they
  exist so the course runs without a GPU, not as useful classifiers.
"""
