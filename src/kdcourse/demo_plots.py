"""Figures of the dark-knowledge demos: the 2-D toy's probability maps, the temperature slider, the
omitted class and the out-of-fold comparison. Like `kdcourse.plots`, each returns a matplotlib
`Figure` (no pyplot state) and saves it given `save_to`.

    fig = plot_toy_maps(run_toy(tempered_softmax, distillation_loss))
    temperature_explorer(probs_at, label_names, n_examples=960)   # static figure + slider
    fig = plot_omitted_class(rows)                  # recall and mean probability, per model
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from kdcourse.plots import _array, _finish, entropy, plot_temperature_bars

__all__ = ["plot_toy_maps", "plot_toy_summary", "temperature_explorer", "plot_entropy_by_temperature",
           "plot_omitted_class", "plot_oof_comparison"]


# ---------------------------------------------------------------- the 2-D toy
def plot_toy_maps(result, save_to=None) -> Figure:
    """Teacher, hard-label student and distilled student side by side: each pixel's colour mixes
    red, green and blue by the model's probabilities of dog, wolf and cat; the training points on top."""
    from kdcourse.toy import CLASSES
    maps, extent = result.maps, result.maps["extent"]
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 3, sharey=True)
    titles = {"teacher": f"teacher (MLP), acc {result.teacher_accuracy:.3f}",
              "hard": f"hard labels: acc {result.hard.accuracy:.3f}, agree {result.hard.agreement:.2f}",
              "distilled": f"distilled (T={result.config.temperature:g}): acc "
                           f"{result.distilled.accuracy:.3f}, agree {result.distilled.agreement:.2f}"}
    points, labels = _array(maps["points"]), _array(maps["labels"]).astype(int)
    colors = np.array([[0.8, 0, 0], [0, 0.6, 0], [0, 0, 0.8]])
    for ax, name in zip(axes, ("teacher", "hard", "distilled")):
        ax.imshow(_array(maps[name]), origin="lower", extent=extent, aspect="auto")
        ax.scatter(points[:, 0], points[:, 1], s=6, c=colors[labels], edgecolors="black",
                   linewidths=0.3)
        ax.set_title(titles[name], fontsize=9)
        ax.set_xlabel("x1")
    axes[0].set_ylabel("x2")
    fig.suptitle(f"probability maps (red {CLASSES[0]}, green {CLASSES[1]}, blue {CLASSES[2]}); "
                 f"agree = every probability within {result.config.tolerance:g} of the teacher's",
                 fontsize=10)
    return _finish(fig, save_to)


def plot_toy_summary(toy: dict, save_to=None) -> Figure:
    """metrics.json's `toy` as bars: accuracy and agreement per student, one dot per seed."""
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    for i, key in enumerate(("accuracy", "agreement")):
        for j, name in enumerate(("hard", "distilled")):
            values = toy[name][key]
            x = i * 3 + j
            ax.bar(x, np.mean(values), color=f"C{j}", label=name if i == 0 else None)
            ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
    ax.set_xticks([0.5, 3.5], ["accuracy", f"agreement (tol {toy['tolerance']:g})"])
    ax.set(ylim=(0, 1.05), title=f"2-D toy, {len(toy['seeds'])} seeds")
    ax.legend(fontsize=8)
    return _finish(fig, save_to)


# ---------------------------------------------------------------- the temperature slider
def plot_entropy_by_temperature(logits, temperatures=None, save_to=None) -> Figure:
    """Entropy (nats) of softmax(logits [C] / T) against T, up to the uniform's log C."""
    z = _array(logits).reshape(-1)
    temperatures = np.geomspace(0.5, 20, 60) if temperatures is None else np.asarray(temperatures)
    values = [entropy(np.exp((z / T) - np.logaddexp.reduce(z / T))) for T in temperatures]
    fig = Figure(figsize=(4.4, 3.2))
    ax = fig.subplots()
    ax.plot(temperatures, values)
    ax.axhline(math.log(len(z)), color="gray", linestyle="--", linewidth=1, label="log C (uniform)")
    ax.set(xscale="log", xlabel="temperature T", ylabel="entropy (nats)", title="entropy of the soft labels")
    ax.legend(fontsize=8)
    return _finish(fig, save_to)


def _widget_frontend() -> bool:
    """True inside an IPython kernel with ipywidgets installed. A kernel cannot see whether a
    front end will render the widget (papermill and nbconvert also run a kernel), which is why the
    static figure is always drawn first."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def temperature_explorer(logits_of, label_names, n_examples: int, index: int = 0, labels=None,
                         static_temperatures=(1.0, 2.0, 5.0, 10.0), tempered_softmax=None):
    """The teacher's soft labels of one complaint and their entropy, at several temperatures.

    `logits_of(i)` returns the teacher's logits [C] of test complaint i; `labels[i]` its true
    class (drawn red). Always displays a static figure at `static_temperatures` (what papermill,
    nbconvert and nbgrader's feedback keep); inside a kernel with ipywidgets, adds sliders over
    T (0.5 to 20) and the complaint index that redraw the bars and the entropy curve.
    Returns the widget, or None without ipywidgets.
    """
    from IPython.display import display
    softmax = tempered_softmax or (lambda z, T: _softmax(_array(z) / T))

    def figure(i, temperatures):
        z = logits_of(i)
        probs = {T: softmax(z, T) for T in temperatures}
        true = None if labels is None else int(labels[i])
        return plot_temperature_bars(probs, label_names, true_label=true,
                                     title=f"teacher's soft labels for test complaint {i}")

    display(figure(index, static_temperatures))
    if not _widget_frontend():
        return None
    import ipywidgets as widgets
    temperature = widgets.FloatLogSlider(value=2.0, base=10, min=math.log10(0.5), max=math.log10(20),
                                         step=0.02, description="T", continuous_update=False)
    which = widgets.IntSlider(value=index, min=0, max=n_examples - 1, description="complaint",
                              continuous_update=False)
    output = widgets.Output()

    def redraw(_=None):
        with output:
            output.clear_output(wait=True)
            display(figure(which.value, (temperature.value,)))
            display(plot_entropy_by_temperature(logits_of(which.value),
                                                np.geomspace(0.5, 20, 40)))

    temperature.observe(redraw, names="value")
    which.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox([temperature, which]), output])
    display(box)
    return box


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    return np.exp(z) / np.exp(z).sum()


# ---------------------------------------------------------------- the omitted class
def plot_omitted_class(result, save_to=None) -> Figure:
    """Recall on the omitted class's test complaints per model (and after the bias fix), and the
    mean probability each student gives it. `result`: an `OmittedClassResult` (kdcourse.omitted) or
    its to_json() dict, values floats or lists over seeds (their mean is drawn, dots per seed)."""
    data = result.to_json() if hasattr(result, "to_json") else result
    bars = [("teacher", data["teacher_recall"]), ("hard", data["hard_recall"]),
            ("hard + bias", data.get("hard_recall_bias_fixed")),
            ("distilled", data["distilled_recall"]),
            ("distilled + bias", data["distilled_recall_bias_fixed"])]
    bars = [(name, np.atleast_1d(_array(v))) for name, v in bars if v is not None]
    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [5, 2]})
    color = {"teacher": "gray", "hard": "C0", "distilled": "C1"}
    for x, (name, values) in enumerate(bars):
        left.bar(x, values.mean(), color=color[name.split()[0]], hatch="//" if "bias" in name else None)
        left.scatter([x] * len(values), values, color="black", s=10, zorder=3)
    left.set_xticks(range(len(bars)), [name for name, _ in bars], fontsize=8)
    left.set(ylim=(0, 1), ylabel="recall", title=f"recall on `{data['label']}` (never in the transfer set)")
    probs = [("hard", data.get("hard_mean_prob")), ("distilled", data.get("distilled_mean_prob"))]
    probs = [(name, np.atleast_1d(_array(v))) for name, v in probs if v is not None]
    for x, (name, values) in enumerate(probs):
        right.bar(x, values.mean(), color=color[name])
        right.scatter([x] * len(values), values, color="black", s=10, zorder=3)
    right.set_xticks(range(len(probs)), [name for name, _ in probs], fontsize=8)
    right.set(ylabel="mean probability", title="probability given to it", ylim=(0, None))
    return _finish(fig, save_to)


# ---------------------------------------------------------------- out-of-fold soft labels
def plot_oof_comparison(oof: dict, save_to=None) -> Figure:
    """metrics.json's `oof`: macro-F1, agreement and ECE of students distilled from in-sample and
    from out-of-fold soft labels, mean over seeds with a dot per seed."""
    keys = ("macro_f1", "agreement", "ece")
    fig = Figure(figsize=(9, 3.4))
    axes = fig.subplots(1, 3)
    for ax, key in zip(axes, keys):
        for x, name in enumerate(("in_sample", "out_of_fold")):
            values = np.atleast_1d(_array(oof[name][key]))
            ax.bar(x, values.mean(), color=f"C{x}")
            ax.scatter([x] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks([0, 1], ["in-sample", "out-of-fold"], fontsize=8)
        ax.set_title(key, fontsize=9)
    fig.suptitle("distilled students, test split", fontsize=10)
    return _finish(fig, save_to)
