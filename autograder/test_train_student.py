"""Hidden suite of train_student: zero_grad, forward, loss, backward, step, scheduler per batch.

The worker injects the grader's own distillation_loss into the student's namespace, so a bug in
distillation_loss costs points only in its own suite.
"""
import functools
import json

import pytest
import torch

from autograder.cases import make_loader, make_model, make_optimizer, make_scheduler
from autograder.judge import assert_matches, decode

FN = "train_student"
BATCHES = 3   # 12 examples, batch size 4


def case(label, *, seed, optimizer, temperature, alpha, epochs=None, scheduler=None, train=True,
         **kwargs):
    kwargs = dict(kwargs, temperature=temperature, alpha=alpha)
    if epochs is not None:
        kwargs["epochs"] = epochs
    return {"id": f"{FN}/{label}", "fn": FN, "kind": "train", "seed": seed,
            "model": {"seed": seed, "classes": 5, "dropout": 0.25, "train": train},
            "loader": {"n": 12, "batch_size": 4, "seed": seed + 1, "classes": 5, "teacher_scale": 3.0},
            "optimizer": optimizer, "scheduler": scheduler, "kwargs": kwargs}


def soft_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """The distillation loss written out (independent of the worker's copy)."""
    log_p_t = torch.log_softmax(teacher_logits / temperature, -1)
    log_p_s = torch.log_softmax(student_logits / temperature, -1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(student_logits, labels)
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce


def reference_train(case, **switches):
    """(losses, state_dict) of the reference loop; the same case is trained once per session
    (a batch grades many submissions against the same cases). Callers must not modify them."""
    return _reference_train(json.dumps(case, sort_keys=True), **switches)


@functools.lru_cache(maxsize=None)
def _reference_train(case_json, *, train_mode=True, zero_grad=True, step_scheduler=True,
                     use_teacher=True, step_first=False, epochs=None):
    """The reference loop; the keyword switches reproduce the classic mistakes."""
    case = json.loads(case_json)
    kwargs = case["kwargs"]
    student = make_model(case["model"])
    optimizer = make_optimizer(case["optimizer"], student.parameters())
    scheduler = make_scheduler(case["scheduler"], optimizer)
    student.train(train_mode)
    torch.manual_seed(case["seed"])
    losses = []
    for _ in range(epochs or kwargs.get("epochs", 1)):
        for batch in make_loader(case["loader"]):
            if zero_grad:
                optimizer.zero_grad()
            logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            teacher = batch["teacher_logits"] if use_teacher else None
            loss = (soft_loss(logits, teacher, batch["labels"], kwargs["temperature"], kwargs["alpha"])
                    if use_teacher else torch.nn.functional.cross_entropy(logits, batch["labels"]))
            if step_first:
                optimizer.step()
            loss.backward()
            if not step_first:
                optimizer.step()
            if scheduler is not None and step_scheduler:
                scheduler.step()
            losses.append(loss.item())
    return torch.tensor(losses, dtype=torch.float64), student.state_dict()


MISTAKES = [
    ("The student ran in eval mode: call student.train() before the loop.", {"train_mode": False}),
    ("Gradients accumulate across steps: call optimizer.zero_grad() every batch.", {"zero_grad": False}),
    ("The learning-rate scheduler never stepped: call scheduler.step() after optimizer.step() "
     "when a scheduler is given.", {"step_scheduler": False}),
    ("The teacher is ignored: train with distillation_loss(student_logits, "
     "batch['teacher_logits'], batch['labels'], ...), not the hard labels alone.",
     {"use_teacher": False}),
    ("optimizer.step() runs before loss.backward(): compute the gradients first.", {"step_first": True}),
    ("Only one epoch ran: loop over the loader `epochs` times.", {"epochs": 1}),
]


def diagnoses(case):
    out = []
    for hint, switches in MISTAKES:
        losses, state = reference_train(case, **switches)
        out.append((hint, losses, state))
    return out


SGD = {"name": "sgd", "lr": 0.5}
BASIC = case("sgd,T=2,alpha=0.5", seed=70, optimizer=SGD, temperature=2.0, alpha=0.5, device="cpu")
ADAMW = case("adamw,T=4,alpha=0.9,epochs=2", seed=71, optimizer={"name": "adamw", "lr": 0.05},
             temperature=4.0, alpha=0.9, epochs=2)
SCHEDULED = case("scheduler,epochs=2", seed=72, optimizer=SGD, temperature=2.0, alpha=0.7, epochs=2,
                 scheduler={"name": "exp", "gamma": 0.3})
EVAL_START = case("student-starts-in-eval", seed=73, optimizer=SGD, temperature=3.0, alpha=0.5,
                  train=False)
SOFT_ONLY = case("alpha=1", seed=74, optimizer=SGD, temperature=2.0, alpha=1.0)


def losses_of(obs):
    assert obs.get("losses") is not None, (
        f"train_student returned a {obs.get('type')}, expected a list with every step's loss")
    assert None not in obs["losses"], (
        f"the losses should be Python floats (loss.item()), got {', '.join(obs['loss_types'])}")
    return torch.tensor(obs["losses"], dtype=torch.float64)


def check_losses(case, obs):
    losses = losses_of(obs)
    expected, _ = reference_train(case)
    hints = [(hint, variant) for hint, variant, _ in diagnoses(case)] if not (
        losses.shape == expected.shape and torch.allclose(losses, expected, rtol=1e-4, atol=1e-5)) else []
    assert_matches(losses, expected, what="the per-step losses", mistakes=hints, rtol=1e-4, atol=1e-5)


@pytest.mark.property_check
@pytest.mark.points(1)
@pytest.mark.parametrize("case", [BASIC, ADAMW], ids=["1-epoch", "2-epochs"])
def test_returns_one_float_per_step(case, observe):
    """A list with one Python float per optimizer step (epochs * batches)."""
    obs = observe(case)
    losses = losses_of(obs)
    steps = case["kwargs"].get("epochs", 1) * BATCHES
    hint = " Loop over the loader `epochs` times." if len(losses) == BATCHES else ""
    assert len(losses) == steps, f"expected {steps} losses (one per step), got {len(losses)}.{hint}"


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [BASIC, ADAMW, SCHEDULED, SOFT_ONLY],
                         ids=lambda c: c["id"].split("/")[1])
def test_losses_match_reference(case, observe):
    """Each step's loss equals the reference loop's."""
    check_losses(case, observe(case))


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [BASIC, ADAMW], ids=lambda c: c["id"].split("/")[1])
def test_final_parameters_match_reference(case, observe):
    """After training, the student's weights equal the reference loop's."""
    obs = observe(case)
    _, state = reference_train(case)
    for name, expected in state.items():
        actual = decode(obs["params"][name])
        same = actual.shape == expected.shape and torch.allclose(actual, expected.double(),
                                                                  rtol=1e-4, atol=1e-5)
        hints = [] if same else [(hint, s[name].double()) for hint, _, s in diagnoses(case)]
        assert_matches(actual, expected.double(), what=f"the trained weights ({name})",
                       mistakes=hints, rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [SCHEDULED], ids=["scheduler"])
def test_scheduler_steps_every_batch(case, observe):
    """A given scheduler steps once per batch, after the optimizer."""
    obs = observe(case)
    steps = case["kwargs"]["epochs"] * BATCHES
    assert obs["scheduler_steps"] == steps, (
        f"the scheduler stepped {obs['scheduler_steps']} times for {steps} batches: call "
        "scheduler.step() once per batch, after optimizer.step()")
    check_losses(case, obs)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [EVAL_START], ids=["eval-start"])
def test_student_trains_in_train_mode(case, observe):
    """A student handed over in eval mode is switched to train mode (dropout on)."""
    obs = observe(case)
    assert obs["modes"] and all(obs["modes"]), (
        "the student ran in eval mode during training: call student.train() before the loop")
    check_losses(case, obs)
