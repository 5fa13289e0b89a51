"""Metrics against values computed by hand on tiny inputs."""
import math

import pytest
import torch

from kdcourse.metrics import (class_similarity, evaluate_logits, expected_calibration_error,
                              metrics_by_group, reliability_bins)

# 4 examples, 3 classes: predictions 0, 1, 1, 2 against labels 0, 1, 2, 2.
LOGITS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
LABELS = torch.tensor([0, 1, 2, 2])


def test_accuracy_and_f1_by_hand():
    m = evaluate_logits(LOGITS, LABELS, label_names=["a", "b", "c"])
    assert m["accuracy"] == 0.75
    # class a: P=R=1 -> 1; class b: P=1/2, R=1 -> 2/3; class c: P=1, R=1/2 -> 2/3
    assert m["per_class_f1"] == pytest.approx({"a": 1.0, "b": 2 / 3, "c": 2 / 3})
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


def test_nll_by_hand():
    expected = -sum(math.log(torch.softmax(LOGITS[i], 0)[LABELS[i]]) for i in range(4)) / 4
    assert evaluate_logits(LOGITS, LABELS)["nll"] == pytest.approx(expected, rel=1e-5)


def test_agreement_and_kl_to_the_teacher():
    teacher = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 3.0]])
    m = evaluate_logits(LOGITS, LABELS, teacher_logits=teacher)
    assert m["agreement"] == 0.75
    p, q = teacher.softmax(-1), LOGITS.softmax(-1)
    assert m["kl_to_teacher"] == pytest.approx(float((p * (p / q).log()).sum(-1).mean()), rel=1e-5)
    assert evaluate_logits(LOGITS, LABELS, teacher_logits=LOGITS)["kl_to_teacher"] == pytest.approx(0, abs=1e-6)


def test_ece_by_hand():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins (0.8,0.9] and (0.5,0.6]
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1])
    expected = (2 / 3) * abs(0.5 - 0.9) + (1 / 3) * abs(1.0 - 0.6)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins["count"][8] == 2 and bins["count"][5] == 1 and sum(bins["count"]) == 3


def test_perfectly_calibrated_is_zero():
    probs = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, torch.tensor([0, 1])) == 0.0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="expected logits \\[N, C\\] and labels \\[N\\]"):
        evaluate_logits(torch.zeros(4, 3), torch.zeros(5))


def test_metrics_by_group():
    groups = ["card", "card", "loan", "loan"]
    out = metrics_by_group(LOGITS, LABELS, groups, min_size=2)
    assert out["card"]["accuracy"] == 1.0 and out["loan"]["accuracy"] == 0.5


def test_class_similarity_rows_average_soft_labels():
    sim = class_similarity(LOGITS, LABELS, 3)
    torch.testing.assert_close(sim[2], (LOGITS[2].softmax(0) + LOGITS[3].softmax(0)) / 2)
    torch.testing.assert_close(sim.sum(1), torch.ones(3))
