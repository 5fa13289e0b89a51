"""The reference run's dark-knowledge demos (run_reference.py calls them after the sweep).

- `toy`: the 2-D warm-up (kdcourse.toy) over the seeds, with the notebook's graded functions;
- `omitted_class`: a class removed from the transfer set, hard-label vs distilled students over
  the seeds, recall before and after the bias fix (kdcourse.omitted);
- `oof` (opt-in, `--oof`): students distilled from out-of-fold soft labels (kdcourse.oof) against
  the headline's in-sample distilled students, same seeds.

    python solutions/reference/run_reference.py --profile smoke --seeds 0 --notebook false --oof true
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from kdcourse import demo_plots, plots
from kdcourse.data import with_teacher_logits
from kdcourse.oof import load_oof_logits, oof_dir
from kdcourse.oof_train import train_fold_teachers
from kdcourse.omitted import OmittedLogits, label_index, missing_from, omitted_class_result, without_class
from kdcourse.omitted import summarise as summarise_omitted
from kdcourse.toy import run_toy
from kdcourse.toy import summarise as summarise_toy

logger = logging.getLogger("reference.demos")
FILES = ("temperature_bars.png", "toy_maps.png", "toy_summary.png", "omitted_class.png", "oof.png")
OOF_KEYS = ("macro_f1", "agreement", "ece")


@dataclass
class DemoConfig:
    toy: bool = field(default=True, metadata={"help": "the 2-D toy warm-up over the seeds (quick)"})
    omitted_class: str = field(default="debt_collection", metadata={
        "help": "the class removed from the transfer set (two more students per seed); '' skips it"})
    oof: bool = field(default=False, metadata={
        "help": "distil from out-of-fold soft labels too (trains the fold teachers if missing)"})
    oof_folds: int = field(default=3, metadata={"help": "K of the out-of-fold teachers"})


def run_demos(dcfg: DemoConfig, graded, cfg, profile, data, distilled: list, out: Path,
              train_one, save) -> dict:
    """metrics.json's `toy`, `omitted_class` and `oof` (those that ran), with `demo_seconds` per
    stage; `data` is the run's students.RunData, `train_one` students.train_one. `save(metrics_part)`
    is called after each stage, so a failure loses nothing done."""
    part, seconds = {}, {}
    first = data.teacher_logits["test"][0]
    plots.plot_temperature_bars({T: (first / T).softmax(-1) for T in (1.0, 2.0, 5.0, 10.0)},
                                data.label_names, true_label=int(data.labels["test"][0]),
                                title="teacher's soft labels for test complaint 0",
                                save_to=out / "temperature_bars.png")
    stages = [("toy", dcfg.toy, lambda: toy_stage(graded, cfg.seeds, out)),
              ("omitted_class", bool(dcfg.omitted_class),
               lambda: omitted_stage(dcfg.omitted_class, graded, cfg, profile, data, out, train_one)),
              ("oof", dcfg.oof, lambda: oof_stage(dcfg.oof_folds, graded, cfg, profile, data, distilled,
                                                  out, train_one))]
    for name, wanted, stage in stages:
        if not wanted:
            continue
        start = time.perf_counter()
        part[name] = stage()
        seconds[name] = time.perf_counter() - start
        logger.info("demo %s: %.0f s", name, seconds[name])
        save(part | {"demo_seconds": seconds})
    return part | {"demo_seconds": seconds}


def toy_stage(graded, seeds, out: Path) -> dict:
    results = [run_toy(graded.tempered_softmax, graded.distillation_loss, seed=seed) for seed in seeds]
    demo_plots.plot_toy_maps(results[0], save_to=out / "toy_maps.png")
    toy = summarise_toy(results)
    demo_plots.plot_toy_summary(toy, save_to=out / "toy_summary.png")
    return toy


def omitted_stage(label: str, graded, cfg, profile, data, out: Path, train_one) -> dict:
    label_id = label_index(label, data.label_names)
    absent = missing_from(label_id, training=data.labels["train"].tolist(), test=data.labels["test"].tolist())
    if absent:  # the smoke profile's first rows hold no debt_collection complaint
        logger.warning("omitted class %s: none in the %s split, stage skipped", label, " or ".join(absent))
        return {"label": label, "skipped": f"no {label} complaint in the {' or '.join(absent)} split"}
    reduced = replace(data, train_data=without_class(data.train_data, label_id))
    results = []
    for seed in cfg.seeds:
        runs = {name: train_one(graded, cfg, profile, reduced, temperature=t, alpha=a, seed=seed,
                                epochs=profile.student_epochs)
                for name, (t, a) in {"hard": (1.0, 0.0), "distilled": (cfg.temperature, cfg.alpha)}.items()}
        logits = OmittedLogits(teacher_val=data.teacher_logits["validation"],
                               teacher_test=data.teacher_logits["test"], test_labels=data.labels["test"],
                               **{f"{name}_{split}": runs[name][f"{long}_logits"] for name in runs
                                  for split, long in (("val", "validation"), ("test", "test"))})
        results.append(omitted_class_result(label, label_id, logits, seed=seed))
        logger.info("omitted %s, seed %d: %s", label, seed, results[-1])
    summary = summarise_omitted(results)
    demo_plots.plot_omitted_class(summary, save_to=out / "omitted_class.png")
    return summary


def oof_stage(folds: int, graded, cfg, profile, data, distilled: list, out: Path, train_one) -> dict:
    if not (oof_dir(profile, folds) / "manifest.json").exists() and not profile.builds_tiny_models:
        raise FileNotFoundError(f"no out-of-fold teachers for profile {profile.name}: run `make teacher "
                                f"PROFILE={profile.name} ARGS=\"--folds {folds}\"` first")
    start = time.perf_counter()
    train_fold_teachers(profile, folds)  # trains only the folds that are missing
    teacher_seconds = time.perf_counter() - start
    oof_logits = load_oof_logits(profile, data.tokenized["train"], data.tokenizer, folds)
    with_oof = replace(data, train_data=with_teacher_logits(data.tokenized["train"], oof_logits))
    runs = [train_one(graded, cfg, profile, with_oof, temperature=cfg.temperature, alpha=cfg.alpha,
                      seed=seed, epochs=profile.student_epochs) for seed in cfg.seeds]
    labels = data.labels["train"]
    soft = {name: {"mean_top_probability": logits.softmax(-1).max(-1).values.mean().item(),
                   "accuracy": (logits.argmax(-1) == labels).float().mean().item()}
            for name, logits in (("in_sample", data.teacher_logits["train"]), ("out_of_fold", oof_logits))}
    oof = {"folds": folds, "seeds": list(cfg.seeds), "temperature": cfg.temperature, "alpha": cfg.alpha,
           "fold_teacher_seconds": teacher_seconds, "train_soft_labels": soft,
           "in_sample": {k: [r["test"][k] for r in distilled] for k in OOF_KEYS},
           "out_of_fold": {k: [r["test"][k] for r in runs] for k in OOF_KEYS}}
    for name in ("in_sample", "out_of_fold"):
        oof[name]["mean"] = {k: statistics.fmean(oof[name][k]) for k in OOF_KEYS}
    demo_plots.plot_oof_comparison(oof, save_to=out / "oof.png")
    return oof


def _mean_spread(values) -> str:
    values = list(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {spread:.3f}"


def report_lines(metrics: dict) -> list[str]:
    """report.md's demo sections: a sentence and a plot each, for the stages that ran."""
    lines = ["## The teacher's soft labels at four temperatures", "",
             "Test complaint 0; the notebook's section 1 adds sliders over T and the complaint.", "",
             "![temperature bars](temperature_bars.png)", ""]
    if "toy" in metrics:
        t = metrics["toy"]
        lines += ["## 2-D toy: dark knowledge you can see", "",
                  f"Over seeds {t['seeds']}: hard-label student accuracy {_mean_spread(t['hard']['accuracy'])}, "
                  f"agreement within {t['tolerance']:g} of the teacher {_mean_spread(t['hard']['agreement'])}; "
                  f"distilled (T={t['temperature']:g}) accuracy {_mean_spread(t['distilled']['accuracy'])}, "
                  f"agreement {_mean_spread(t['distilled']['agreement'])}. The demo's pattern (both >= 0.95 "
                  f"accurate, distilled agreement >= 0.90, hard <= 0.80) "
                  f"{'holds' if _toy_pattern(t) else 'does not hold'} here.", "",
                  "![toy maps](toy_maps.png) ![toy summary](toy_summary.png)", ""]
    if "skipped" in metrics.get("omitted_class", {}):
        lines += ["## A class the students never saw", "", f"Skipped: {metrics['omitted_class']['skipped']}.", ""]
    elif "omitted_class" in metrics:
        o, m = metrics["omitted_class"], metrics["omitted_class"]["mean"]
        lines += [f"## A class the students never saw: `{o['label']}`", "",
                  f"Seeds {o['seeds']}, {o['test_examples']} test complaints of the class. Recall: teacher "
                  f"{m['teacher_recall']:.2f}, hard-label student {_mean_spread(o['hard_recall'])}, distilled "
                  f"{_mean_spread(o['distilled_recall'])}; after the bias fix (chosen on validation) "
                  f"{_mean_spread(o['distilled_recall_bias_fixed'])} distilled and "
                  f"{_mean_spread(o['hard_recall_bias_fixed'])} hard. Mean probability of the class: "
                  f"hard {m['hard_mean_prob']:.3f}, distilled {m['distilled_mean_prob']:.3f}.", "",
                  "![omitted class](omitted_class.png)", ""]
    if "oof" in metrics:
        f, s = metrics["oof"], metrics["oof"]["train_soft_labels"]
        lines += [f"## Out-of-fold soft labels ({f['folds']} folds)", "",
                  f"Training-split soft labels: in-sample mean top probability "
                  f"{s['in_sample']['mean_top_probability']:.3f} (accuracy {s['in_sample']['accuracy']:.3f}), "
                  f"out-of-fold {s['out_of_fold']['mean_top_probability']:.3f} ({s['out_of_fold']['accuracy']:.3f}). "
                  f"Distilled students, seeds {f['seeds']}, test: "
                  + "; ".join(f"{k} in-sample {_mean_spread(f['in_sample'][k])}, out-of-fold "
                              f"{_mean_spread(f['out_of_fold'][k])}" for k in OOF_KEYS) + ".", "",
                  "![out-of-fold](oof.png)", ""]
    return lines


def _toy_pattern(t: dict) -> bool:
    return (min(t["hard"]["accuracy"] + t["distilled"]["accuracy"]) >= 0.95
            and min(t["distilled"]["agreement"]) >= 0.90 and max(t["hard"]["agreement"]) <= 0.80)
