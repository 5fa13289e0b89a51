"""kdcourse.plots: every figure builds headless from lists, arrays or tensors, and saves where asked."""
import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from kdcourse import plots
from kdcourse.metrics import reliability_bins

matplotlib.use("Agg")
LABELS = [f"class_{i}" for i in range(4)]


@pytest.fixture(scope="module")
def probs_and_labels():
    generator = torch.Generator().manual_seed(0)
    probs = (3 * torch.randn(200, 4, generator=generator)).softmax(-1)
    return probs, torch.randint(0, 4, (200,), generator=generator)


def test_entropy_against_the_definition():
    """Entropy in nats: log(C) for the uniform distribution, 0 for one-hot, 0 log 0 = 0."""
    assert plots.entropy(np.full(4, 0.25)) == pytest.approx(math.log(4))
    assert plots.entropy([0.0, 1.0, 0.0]) == 0.0
    p = torch.tensor([0.7, 0.2, 0.1])
    assert plots.entropy(p) == pytest.approx(float(-(p * p.log()).sum()), rel=1e-6)


def test_temperature_bars_show_entropy_per_temperature(tmp_path):
    logits = torch.tensor([3.0, 1.0, 0.0, -1.0])
    probs_by_T = {T: (logits / T).softmax(-1) for T in (1.0, 2.0, 10.0)}
    fig = plots.plot_temperature_bars(probs_by_T, LABELS, true_label=0, save_to=tmp_path / "bars.png")
    assert isinstance(fig, Figure) and (tmp_path / "bars.png").stat().st_size > 0
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("T = 1: entropy")
    expected = plots.entropy(probs_by_T[10.0])
    assert f"entropy {expected:.2f}" in titles[2]


def test_training_curves_smooth_without_shifting_the_start():
    losses = [4.0, 2.0, 0.0, 2.0, 4.0]
    fig = plots.plot_training_curves({"run": losses, "tensor run": torch.tensor(losses)}, smooth=2)
    raw, smoothed = fig.axes[0].lines[:2]
    assert list(raw.get_ydata()) == losses
    assert list(smoothed.get_ydata()) == [4.0, 3.0, 1.0, 1.0, 3.0]
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["run", "tensor run"]


def test_confusion_matrix_rows_sum_to_one_when_normalized():
    matrix = [[8, 2, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 5, 5]]
    fig = plots.plot_confusion_matrix(matrix, LABELS, normalize=True)
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(image.sum(axis=1), [1, 1, 0, 1])  # an empty row stays 0, no NaN
    raw = plots.plot_confusion_matrix(matrix, LABELS, normalize=False).axes[0].images[0].get_array()
    np.testing.assert_array_equal(raw, matrix)


def test_class_similarity_hides_the_diagonal():
    matrix = torch.full((4, 4), 0.1) + 0.6 * torch.eye(4)
    image = plots.plot_class_similarity(matrix, LABELS).axes[0].images[0].get_array()
    assert np.all(np.diag(image) == 0) and image[0, 1] == pytest.approx(0.1)
    full = plots.plot_class_similarity(matrix, LABELS, hide_diagonal=False).axes[0].images[0]
    assert full.get_array()[0, 0] == pytest.approx(0.7)


def test_reliability_diagram_from_bins_or_probabilities(probs_and_labels, tmp_path):
    probs, labels = probs_and_labels
    from_bins = plots.plot_reliability_diagram(reliability_bins(probs, labels, 10))
    from_probs = plots.plot_reliability_diagram(probs, labels, n_bins=10, save_to=tmp_path / "r.png")
    assert from_bins.axes[0].get_title() == from_probs.axes[0].get_title()
    assert from_bins.axes[0].get_title().startswith("reliability (ECE")
    assert (tmp_path / "r.png").exists()
    with pytest.raises(ValueError, match="labels"):
        plots.plot_reliability_diagram(probs)


def test_sweep_averages_repeats_and_draws_one_line_per_hue(tmp_path):
    rows = [{"temperature": T, "alpha": a, "macro_f1": T * a + seed, "seed": seed}
            for T in (1.0, 2.0, 4.0) for a in (0.5, 0.9) for seed in (0, 1)]
    fig = plots.plot_sweep(rows, baseline=0.3, save_to=tmp_path / "sweep.png")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.lines}
    assert set(lines) == {"alpha = 0.5", "alpha = 0.9", "hard labels"}
    np.testing.assert_allclose(lines["alpha = 0.5"].get_ydata(), [1.0, 1.5, 2.5])  # mean of seeds
    assert ax.get_xlabel() == "temperature" and ax.get_ylabel() == "macro_f1"
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_accepts_a_dataframe_and_no_hue():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"temperature": [1.0, 2.0], "agreement": [0.8, 0.9]})
    fig = plots.plot_sweep(frame, y="agreement", hue=None)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [0.8, 0.9])
