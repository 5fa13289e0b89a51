"""The assignment's figures. Each function returns a matplotlib `Figure` and, given `save_to`, saves it.

    fig = plot_temperature_bars({1.0: p1, 5.0: p5}, label_names, true_label=3)
    fig = plot_training_curves({"hard labels": losses0, "distilled": losses1}, smooth=20)
    fig = plot_sweep(rows, x="temperature", y="macro_f1", hue="alpha", save_to="runs/cpu/sweep.png")

Figures are built with `matplotlib.figure.Figure` (no pyplot state, no display needed): they show in
Jupyter as the cell's value and work under the Agg backend in tests and scripts.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["entropy", "plot_temperature_bars", "plot_training_curves", "plot_confusion_matrix",
           "plot_reliability_diagram", "plot_class_similarity", "plot_sweep"]


def _array(x) -> np.ndarray:
    """A float64 NumPy copy of a list, array or (CPU/GPU, grad or not) tensor."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _finish(fig: Figure, save_to) -> Figure:
    fig.tight_layout()
    if save_to is not None:
        path = Path(save_to)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def entropy(probs) -> float:
    """Shannon entropy in nats of one probability vector `[C]` (0 log 0 = 0)."""
    p = _array(probs)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def plot_temperature_bars(probs_by_T: dict, label_names, true_label: int | None = None,
                          title: str | None = None, save_to=None) -> Figure:
    """One bar chart per temperature of a probability vector `[C]`, entropy in each title.

    `probs_by_T`: {temperature: probs [C]}; `true_label`: index of the gold class (drawn in red).
    The dashed line is the uniform 1/C, whose entropy log(C) is the maximum.
    """
    temperatures = sorted(probs_by_T)
    n, num_classes = len(temperatures), len(label_names)
    fig = Figure(figsize=(3.2 * n, 3.6))
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    colors = ["tab:red" if i == true_label else "tab:blue" for i in range(num_classes)]
    for ax, T in zip(axes, temperatures):
        probs = _array(probs_by_T[T]).reshape(-1)
        ax.bar(range(num_classes), probs, color=colors)
        ax.axhline(1 / num_classes, color="gray", linestyle="--", linewidth=1)
        ax.set_title(f"T = {T:g}: entropy {entropy(probs):.2f} / {math.log(num_classes):.2f}",
                     fontsize=9)
        ax.set_xticks(range(num_classes), label_names, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("probability")
    if title:
        fig.suptitle(title, fontsize=10)
    return _finish(fig, save_to)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average; the first points average what exists so far."""
    if window <= 1 or len(values) == 0:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumsum[idx] - cumsum[start]) / (idx - start)


def plot_training_curves(curves: dict, smooth: int = 10, xlabel: str = "step",
                         ylabel: str = "training loss", logy: bool = False,
                         save_to=None) -> Figure:
    """Loss per step for each run: raw values faint, a `smooth`-step moving average on top.

    `curves`: {run name: [loss per step]}. Losses of runs with different alpha/T are on different
    scales (the KL term is multiplied by T**2), so compare shapes, not heights.
    """
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.subplots()
    for i, (name, values) in enumerate(curves.items()):
        y = _array(values)
        color = f"C{i}"
        ax.plot(y, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(_smooth(y, smooth), color=color, label=name, linewidth=1.8)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if curves:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, save_to)


def _matrix_plot(matrix: np.ndarray, label_names, xlabel: str, ylabel: str, title: str,
                 fmt: str, vmax=None, cmap="Blues") -> Figure:
    num_classes = len(label_names)
    fig = Figure(figsize=(1.0 + 0.75 * num_classes, 0.6 + 0.65 * num_classes))
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap=cmap, vmin=0, vmax=vmax)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ticks = range(num_classes)
    ax.set_xticks(ticks, label_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, label_names, fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    threshold = (vmax if vmax is not None else matrix.max()) / 2
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=7,
                color="white" if value > threshold else "black")
    return fig


def plot_confusion_matrix(matrix, label_names, normalize: bool = True, title: str = "confusion matrix",
                          save_to=None) -> Figure:
    """A `[C, C]` confusion matrix (rows: true class, columns: predicted); rows sum to 1 if normalized."""
    matrix = _array(matrix)
    if normalize:
        matrix = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
    fig = _matrix_plot(matrix, label_names, "predicted", "true", title,
                       ".2f" if normalize else ".0f", vmax=1.0 if normalize else None)
    return _finish(fig, save_to)


def plot_class_similarity(matrix, label_names, title: str = "averaged soft labels (teacher)",
                          hide_diagonal: bool = True, save_to=None) -> Figure:
    """Averaged soft labels `[C, C]` (`kdcourse.metrics.class_similarity`): row c is the teacher's
    mean distribution over examples of class c. The diagonal is hidden by default so that the
    off-diagonal "dark knowledge" (which classes look alike) sets the color scale."""
    matrix = _array(matrix).copy()
    if hide_diagonal:
        np.fill_diagonal(matrix, 0.0)
        title += " (diagonal hidden)"
    fig = _matrix_plot(matrix, label_names, "soft-label class", "true class", title, ".2f",
                       cmap="Purples")
    return _finish(fig, save_to)


def plot_reliability_diagram(bins_or_probs, labels=None, n_bins: int = 15, title: str | None = None,
                             save_to=None) -> Figure:
    """Accuracy against confidence per bin; the diagonal is perfect calibration.

    Pass the dict of `kdcourse.metrics.reliability_bins`, or probabilities `[N, C]` and `labels`
    `[N]` (the bins are computed here). Bars below the diagonal are overconfident.
    """
    if isinstance(bins_or_probs, dict):
        bins = bins_or_probs
    else:
        import torch  # only needed to bin raw probabilities

        from kdcourse.metrics import reliability_bins
        if labels is None:
            raise ValueError("plot_reliability_diagram: pass labels [N] with probabilities [N, C]")
        bins = reliability_bins(torch.as_tensor(_array(bins_or_probs)),
                                torch.as_tensor(_array(labels)).long(), n_bins)
    edges, count = _array(bins["edges"]), _array(bins["count"])
    accuracy, confidence = _array(bins["accuracy"]), _array(bins["confidence"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    filled = count > 0
    gap = np.abs(accuracy - confidence)[filled]
    ece = float((count[filled] / count.sum() * gap).sum()) if count.sum() else 0.0
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    ax.bar(centers[filled], accuracy[filled], width=width[filled], edgecolor="black",
           color="tab:blue", label="accuracy")
    ax.bar(centers[filled], confidence[filled] - accuracy[filled], bottom=accuracy[filled],
           width=width[filled], color="tab:red", alpha=0.3, label="gap")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy",
           title=title or f"reliability (ECE {ece:.3f})")
    ax.legend(fontsize=8, loc="upper left")
    return _finish(fig, save_to)


def plot_sweep(rows, x: str = "temperature", y: str = "macro_f1", hue: str | None = "alpha",
               baseline: float | None = None, baseline_label: str = "hard labels",
               logx: bool | None = None, title: str | None = None, save_to=None) -> Figure:
    """`y` against `x`, one line per value of `hue`, from rows of dicts (or a pandas DataFrame).

    Rows with the same (hue, x) are averaged (e.g. several seeds); `baseline` draws a horizontal
    reference line (e.g. the hard-label student's score). `logx` (default: when x is "temperature")
    spaces x by powers of 2, as temperatures are usually swept.
    """
    if hasattr(rows, "to_dict"):
        rows = rows.to_dict("records")
    groups: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        groups[row[hue] if hue else None][row[x]].append(float(row[y]))
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.subplots()
    for i, (key, points) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0] is None, kv[0]))):
        xs = sorted(points)
        ax.plot(xs, [np.mean(points[v]) for v in xs], marker="o", color=f"C{i}",
                label=f"{hue} = {key:g}" if hue and isinstance(key, (int, float)) else
                (f"{hue} = {key}" if hue else None))
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle="--", label=baseline_label)
    xs = sorted({v for points in groups.values() for v in points})
    if (x == "temperature" if logx is None else logx) and xs and min(xs) > 0:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{v:g}" for v in xs])
        ax.minorticks_off()
    ax.set(xlabel=x, ylabel=y, title=title or f"{y} by {x}")
    if hue or baseline is not None:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, save_to)
