"""Hidden suite of collect_teacher_logits(teacher, loader, device): eval mode, no graph, in order."""
import pytest
import torch

from autograder.cases import make_loader, make_model
from autograder.judge import assert_matches, tensor_of

FN = "collect_teacher_logits"


def case(label, *, train=False, dtype="float32", n=10, batch_size=4, seed=60, **kwargs):
    return {"id": f"{FN}/{label}", "fn": FN, "kind": "collect", "seed": seed,
            "model": {"seed": seed, "classes": 5, "dropout": 0.5, "train": train, "dtype": dtype},
            "loader": {"n": n, "batch_size": batch_size, "seed": seed + 1, "classes": 5},
            "kwargs": kwargs}


def run_teacher(case, *, train_mode=False):
    """The teacher's logits for every example, in order (float64 for comparison)."""
    teacher = make_model(case["model"]).train(train_mode)
    torch.manual_seed(case["seed"])
    with torch.no_grad():
        rows = [teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
                for b in make_loader(case["loader"])]
    return torch.cat(rows).double()


def mistakes(case, expected):
    return [
        ("These are probabilities: return the teacher's raw logits (outputs.logits), not a softmax.",
         torch.softmax(expected, -1)),
        ("Dropout was active: put the teacher in eval mode (teacher.eval()) before the loop.",
         run_teacher(case, train_mode=True)),
        ("The rows are in the wrong order: keep the loader's order (no sorting or shuffling).",
         expected.flip(0)),
        ("The last, smaller batch is missing: iterate over the whole loader.",
         expected[: expected.shape[0] // case["loader"]["batch_size"] * case["loader"]["batch_size"]]),
    ]


PLAIN = case("eval-teacher")
TRAIN_MODE = case("teacher-in-train-mode", train=True, seed=61)
FLOAT64 = case("float64-teacher", dtype="float64", seed=62)
DEVICE = case("device=cpu", seed=63, device="cpu", n=9, batch_size=3)


@pytest.mark.points(3)
@pytest.mark.parametrize("case", [PLAIN, DEVICE], ids=["default", "device=cpu"])
def test_matches_teacher_logits_in_order(case, observe):
    """One row of logits per example, in loader order."""
    out, _ = tensor_of(observe(case), FN)
    expected = run_teacher(case)
    assert_matches(out, expected, what="the collected logits", mistakes=mistakes(case, expected),
                   rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [TRAIN_MODE], ids=["train-mode-teacher"])
def test_teacher_is_put_in_eval_mode(case, observe):
    """A teacher handed over in train mode is switched to eval (dropout off)."""
    obs = observe(case)
    out, _ = tensor_of(obs, FN)
    assert obs["modes"] and not any(obs["modes"]), (
        "the teacher ran in train mode, so dropout changed its logits: call teacher.eval() first")
    expected = run_teacher(case)
    assert_matches(out, expected, what="the collected logits", mistakes=mistakes(case, expected),
                   rtol=1e-4, atol=1e-5)


@pytest.mark.property_check
@pytest.mark.points(1.5)
@pytest.mark.parametrize("case", [FLOAT64, PLAIN], ids=["float64-teacher", "float32-teacher"])
def test_returns_float32_cpu_tensor(case, observe):
    """The result is a float32 tensor on the CPU, whatever the teacher's dtype."""
    out, info = tensor_of(observe(case), FN)
    assert info["device"] == "cpu", f"expected a CPU tensor, got one on {info['device']}: add .cpu()"
    assert info["tensor"]["dtype"] == "float32", (
        f"expected float32 logits, got {info['tensor']['dtype']}: add .float()")


@pytest.mark.property_check
@pytest.mark.points(1.5)
@pytest.mark.parametrize("case", [PLAIN], ids=["default"])
def test_keeps_no_autograd_graph(case, observe):
    """The logits carry no autograd graph (inference only)."""
    _, info = tensor_of(observe(case), FN)
    assert not info["requires_grad"] and not info["has_grad_fn"], (
        "the logits still carry an autograd graph, which keeps every batch's activations in "
        "memory: run the teacher under torch.no_grad() (or torch.inference_mode())")
