"""What a reference run writes beside metrics.json: report.md, the plots, the executed notebook.

    save_plots(out, data, hard, distilled, metrics, cfg)     # *.png
    write_report(out, metrics, cfg, profile)                 # report.md, from metrics.json's numbers
    run_notebook(out, cfg, profile)                          # distillation.ipynb, run by papermill
"""
from __future__ import annotations

import logging
import statistics
from pathlib import Path

import demos  # beside this file
from kdcourse import plots
from kdcourse.metrics import class_similarity, reliability_bins
from kdcourse.paths import SOLUTION_NOTEBOOK
from kdcourse.profiles import Profile

logger = logging.getLogger("reference")

RUN_FILES = ("config.json", "metrics.json", "runs.jsonl", "report.md", "distillation.ipynb",
             "training_curves.png", "confusion_distilled.png", "reliability.png",
             "class_similarity.png", "sweep_macro_f1.png", "sweep_agreement.png", *demos.FILES)  # what a run writes


def fmt(row: dict, key: str) -> str:
    """A row's number: the value, or `mean ± std` over seeds."""
    value = row[key] if not isinstance(row[key], list) else None
    if value is not None:
        return f"{value:.3f}"
    return f"{row['mean'][key]:.3f} ± {row['std'][key]:.3f}"


def write_report(out: Path, metrics: dict, cfg, profile: Profile) -> Path:
    """report.md: the headline table, the verdict, the sweep, the demos, the soft labels."""
    t, h, d = metrics["teacher"], metrics["student_hard"], metrics["student_distilled"]
    gain = d["mean"]["macro_f1"] - h["mean"]["macro_f1"]
    noise = max(d["std"]["macro_f1"], h["std"]["macro_f1"])
    lines = [f"# Reference run: profile `{profile.name}`", "", profile.description, "",
             f"Device {metrics['device']}, {len(cfg.seeds)} seeds {cfg.seeds}, headline distillation "
             f"T={cfg.temperature:g}, alpha={cfg.alpha:g}; wall time {metrics['wall_seconds']:.0f} s. "
             "Test split; students as mean ± std over seeds.", "",
             "| model | params | accuracy | macro-F1 | agreement | KL to teacher | ECE | retained acc. "
             "| latency ms | train s | tokens/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in [("teacher", t), ("student, hard labels", h), ("student, distilled", d)]:
        retained = fmt(row, "retained_accuracy") if "mean" in row else "1.000"
        speed = (f"{statistics.fmean(row['train_seconds']):.0f} | {statistics.fmean(row['tokens_per_s']):.0f}"
                 if isinstance(row["train_seconds"], list) else
                 f"{row['train_seconds']:.0f} | {row['tokens_per_s']:.0f}")
        lines.append(f"| {name} | {row['params'] / 1e6:.2f}M | {fmt(row, 'accuracy')} | "
                     f"{fmt(row, 'macro_f1')} | {fmt(row, 'agreement')} | {fmt(row, 'kl_to_teacher')} | "
                     f"{fmt(row, 'ece')} | {retained} | {row['latency_ms']:.2f} | {speed} |")
    verdict = ("helped" if gain > noise else "hurt" if gain < -noise else "made no difference "
               "larger than the seed-to-seed spread")
    lines += ["", f"**Did distillation help?** Macro-F1 {gain * 100:+.1f} points (distilled minus hard, "
              f"mean over seeds; spread up to {noise * 100:.1f}): distillation {verdict}. Agreement with "
              f"the teacher {(d['mean']['agreement'] - h['mean']['agreement']) * 100:+.1f} points. "
              f"The teacher leads the hard-label student by "
              f"{(t['macro_f1'] - h['mean']['macro_f1']) * 100:.1f} macro-F1 points.", ""]
    if metrics["sweep"]:
        lines += ["## Sweep (seed %d, chosen on validation)" % metrics["sweep"][0]["seed"], "",
                  "| T | alpha | epochs | val macro-F1 | val agreement | val ECE | test macro-F1 |",
                  "|---|---|---|---|---|---|---|"]
        for r in sorted(metrics["sweep"], key=lambda r: -r["val_macro_f1"]):
            lines.append(f"| {r['temperature']:g} | {r['alpha']:g} | {r['epochs']} | "
                         f"{r['val_macro_f1']:.3f} | {r['val_agreement']:.3f} | {r['val_ece']:.3f} | "
                         f"{r['test_macro_f1']:.3f} |")
        best = metrics["sweep_best"]
        lines += ["", f"Best on validation: T={best['temperature']:g}, alpha={best['alpha']:g}. "
                  "With one seed, differences under the spread above are noise.", ""]
    lines += demos.report_lines(metrics)
    sl = metrics["soft_labels"]
    lines += ["## Soft labels", "", f"Cache `{sl['path']}` (fingerprint `{sl['fingerprint']}`), "
              + (f"computed in {sl['seconds']:.1f} s ({sl['tokens_per_s']:.0f} tokens/s)."
                 if not sl["cached"] else "loaded from the cache."), "",
              "## Files", "", "metrics.json, config.json, runs.jsonl (every student run as it finished), "
              "training_curves.png, confusion_distilled.png, reliability.png, class_similarity.png, "
              "sweep_macro_f1.png, sweep_agreement.png, distillation.ipynb (the solution notebook, "
              "executed with small sweep parameters).", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def save_plots(out: Path, data, hard: list, distilled: list, metrics: dict, cfg) -> None:
    """Training curves, the distilled student's confusion matrix and reliability, the teacher's
    class similarity, and the sweep; `data` is the run's students.RunData."""
    names = data.label_names
    plots.plot_training_curves({"hard labels (alpha = 0)": hard[0]["losses"],
                                f"distilled (T = {cfg.temperature:g}, alpha = {cfg.alpha:g})":
                                    distilled[0]["losses"]},
                               smooth=max(1, len(hard[0]["losses"]) // 20),
                               save_to=out / "training_curves.png")
    plots.plot_confusion_matrix(distilled[0]["test"]["confusion_matrix"], names,
                                title="distilled student, test", save_to=out / "confusion_distilled.png")
    plots.plot_reliability_diagram(reliability_bins(distilled[0]["test_logits"].softmax(-1),
                                                    data.labels["test"]),
                                   title=f"distilled student: ECE {distilled[0]['test']['ece']:.3f}",
                                   save_to=out / "reliability.png")
    plots.plot_class_similarity(class_similarity(data.teacher_logits["train"], data.labels["train"],
                                                 len(names), temperature=cfg.temperature), names,
                                save_to=out / "class_similarity.png")
    rows = [r for r in metrics["sweep"] if r["alpha"] > 0]
    baseline = next((r for r in metrics["sweep"] if r["alpha"] == 0), None)
    for y in ("macro_f1", "agreement"):
        if rows:
            plots.plot_sweep(rows, x="temperature", y=f"val_{y}", hue="alpha",
                             baseline=baseline[f"val_{y}"] if baseline else None,
                             title=f"validation {y}", save_to=out / f"sweep_{y}.png")


def run_notebook(out: Path, cfg, profile: Profile) -> Path:
    """Execute the solution notebook with papermill, the profile as parameter, small sweep sizes."""
    import papermill
    caps = [n for n in (cfg.notebook_max_train_samples, profile.max_train_samples) if n]
    parameters = {"PROFILE": cfg.profile, "SEED": cfg.seeds[0], "TEMPERATURE": cfg.temperature,
                  "ALPHA": cfg.alpha, "SWEEP_TEMPERATURES": [cfg.temperature],
                  "SWEEP_ALPHAS": [cfg.alpha], "SWEEP_EPOCHS": 1,
                  "MAX_TRAIN_SAMPLES": min(caps) if caps else None}
    logger.info("executing %s with %s", SOLUTION_NOTEBOOK, parameters)
    target = out / "distillation.ipynb"
    papermill.execute_notebook(str(SOLUTION_NOTEBOOK), str(target), parameters=parameters,
                               cwd=str(SOLUTION_NOTEBOOK.parent), progress_bar=False,
                               kernel_name="python3", log_output=False)
    return target
