"""Hidden suite of distillation_loss: alpha*T^2*KL(teacher||student) + (1-alpha)*CE, batchmean."""
import pytest
import torch
import torch.nn.functional as F

from autograder.cases import make_labels, make_logits
from autograder.judge import assert_matches, decode, tensor_of
from autograder.protocol import is_a

FN = "distillation_loss"


def case(label, seed, *, shape=(6, 5), scale=3.0, shift=0.0, teacher_shape=None, same=False, **kwargs):
    shape = list(shape)
    teacher_seed = seed if same else seed + 1000
    return {"id": f"{FN}/{label}", "fn": FN, "kind": "loss",
            "student": {"shape": shape, "seed": seed, "scale": scale, "shift": shift},
            "teacher": {"shape": list(teacher_shape or shape), "seed": teacher_seed, "scale": scale,
                        "shift": shift},
            "labels": {"n": shape[0], "classes": shape[1], "seed": seed}, "kwargs": kwargs}


def inputs(case):
    s = make_logits(case["student"]).double().requires_grad_()
    t = make_logits(case["teacher"]).double()
    return s, t, make_labels(case["labels"])


def settings(case):
    kwargs = case["kwargs"]
    return kwargs.get("temperature", 2.0), kwargs.get("alpha", 0.5)


def reference(s, t, y, temperature, alpha):
    """KL written out: sum_c p_t (log p_t - log p_s), averaged over the batch; CE at T=1."""
    log_p_t = torch.log_softmax(t / temperature, dim=-1)
    log_p_s = torch.log_softmax(s / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1).mean()
    ce = -torch.log_softmax(s, dim=-1).gather(1, y[:, None]).mean()
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce


def mistakes(s, t, y, temperature, alpha):
    """Known wrong versions, each with the hint that explains it."""
    s = s.detach()
    log_p_s, log_p_t = F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1)
    kl_rows = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    kl, ce = kl_rows.mean(), F.cross_entropy(s, y)
    t2 = temperature ** 2
    mix = lambda soft, hard=ce, a=alpha: a * soft + (1 - a) * hard  # noqa: E731
    return [
        (f"The soft term is 1/T^2 = 1/{t2:g} too small at T={temperature:g}: did you multiply the "
         "KL term by temperature**2?", mix(kl)),
        ("The KL direction is reversed: distillation uses KL(teacher || student), i.e. "
         "F.kl_div(student_log_probs, teacher_probs).",
         mix(t2 * (log_p_s.exp() * (log_p_s - log_p_t)).sum(-1).mean())),
        ("The KL is averaged over batch*classes: use reduction='batchmean' (sum over classes, "
         "mean over the batch), not 'mean'.", mix(t2 * kl / s.shape[1])),
        ("The KL is summed over the batch: use reduction='batchmean' to average over examples.",
         mix(t2 * kl_rows.sum())),
        ("F.kl_div expects log-probabilities as its first argument (log_softmax), and "
         "probabilities as its target.",
         mix(t2 * F.kl_div(log_p_s.exp(), log_p_t.exp(), reduction="batchmean"))),
        ("alpha weights the soft (teacher) term and 1 - alpha the hard-label term; they look "
         "swapped.", mix(t2 * kl, ce, 1 - alpha)),
        ("The cross-entropy on the labels uses the plain logits (T=1), not logits / T.",
         mix(t2 * kl, F.cross_entropy(s / temperature, y))),
    ]


VALUES = [case(f"T={t},alpha={a}", 40 + i, temperature=t, alpha=a)
          for i, (t, a) in enumerate([(1.0, 0.5), (2.0, 0.5), (4.0, 0.3), (4.0, 0.9)])]
SOFT_ONLY = case("T=4,alpha=1", 50, temperature=4.0, alpha=1.0)
HARD_ONLY = case("alpha=0", 51, temperature=3.0, alpha=0.0)
DEFAULTS = case("defaults", 52)
LARGE = case("large-logits", 53, scale=400.0, shift=1500.0, temperature=2.0, alpha=0.5)
EQUAL = case("teacher-equals-student", 54, same=True, temperature=3.0, alpha=1.0)
INVALID = [case("T=0", 55, temperature=0.0), case("alpha=1.5", 56, alpha=1.5),
           case("alpha=-0.1", 57, alpha=-0.1), case("shape-mismatch", 58, teacher_shape=(6, 4))]


def check_value(case, observe):
    out, info = tensor_of(observe(case), FN)
    assert out.numel() == 1 and out.dim() == 0, (
        f"distillation_loss should return a scalar (shape []), got shape {list(out.shape)}: "
        "average over the batch")
    s, t, y = inputs(case)
    temperature, alpha = settings(case)
    assert_matches(out, reference(s, t, y, temperature, alpha).detach(),
                   what=f"the loss at T={temperature:g}, alpha={alpha:g}",
                   mistakes=mistakes(s, t, y, temperature, alpha), rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", VALUES, ids=lambda c: c["id"].split("/")[1])
def test_matches_reference(case, observe):
    """The loss equals alpha*T^2*KL(teacher||student) + (1-alpha)*CE."""
    check_value(case, observe)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [SOFT_ONLY], ids=["T=4,alpha=1"])
def test_soft_term_is_scaled_by_T_squared(case, observe):
    """With alpha=1 only the soft term remains, times T**2."""
    check_value(case, observe)


@pytest.mark.points(1.5)
@pytest.mark.parametrize("case", [HARD_ONLY], ids=["alpha=0"])
def test_alpha_zero_is_plain_cross_entropy(case, observe):
    """With alpha=0 the loss is F.cross_entropy(student_logits, labels)."""
    check_value(case, observe)


@pytest.mark.points(1)
@pytest.mark.parametrize("case", [DEFAULTS], ids=["T=2,alpha=0.5"])
def test_default_arguments(case, observe):
    """The defaults are temperature=2.0 and alpha=0.5."""
    check_value(case, observe)


@pytest.mark.points(1.5)
@pytest.mark.parametrize("case", [LARGE], ids=["large"])
def test_stable_for_large_logits(case, observe):
    """Logits around 1500 give a finite, correct loss (log_softmax, not log(softmax))."""
    out, _ = tensor_of(observe(case), FN)
    assert torch.isfinite(out).all(), (
        "the loss is inf or nan for large logits: log(softmax(x)) underflows to log(0); use "
        "F.log_softmax for the student's log-probabilities")
    check_value(case, observe)


@pytest.mark.property_check
@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", [EQUAL], ids=["equal"])
def test_soft_term_is_zero_when_teacher_equals_student(case, observe):
    """KL(p || p) = 0."""
    check_value(case, observe)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [VALUES[2]], ids=["T=4,alpha=0.3"])
def test_gradient_matches_reference(case, observe):
    """d loss / d student_logits equals the reference's."""
    obs = observe(case)
    _, info = tensor_of(obs, FN)
    assert info["requires_grad"] and obs.get("student_grad") is not None, (
        "no gradient reaches student_logits: do not detach the student's logits or wrap the "
        "loss in torch.no_grad()")
    s, t, y = inputs(case)
    reference(s, t, y, *settings(case)).backward()
    assert_matches(decode(obs["student_grad"]), s.grad, what="the gradient w.r.t. student_logits",
                   rtol=1e-4, atol=1e-6)


@pytest.mark.points(2)
@pytest.mark.parametrize("case", [VALUES[1]], ids=["T=2,alpha=0.5"])
def test_no_gradient_reaches_teacher(case, observe):
    """teacher_logits gets no gradient: the teacher is a fixed target (and the loss is right)."""
    check_value(case, observe)
    obs = observe(case)
    _, info = tensor_of(obs, FN)
    assert info["requires_grad"], "the loss has no gradient at all: is it computed under no_grad?"
    grad = obs.get("teacher_grad")
    assert grad is None or not decode(grad).abs().gt(0).any(), (
        "gradient flows into teacher_logits: the teacher is a fixed target, use "
        "teacher_logits.detach() (or compute its probabilities under torch.no_grad())")


@pytest.mark.property_check
@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", INVALID, ids=lambda c: c["id"].split("/")[1])
def test_rejects_invalid_arguments(case, observe):
    """T <= 0, alpha outside [0, 1] or mismatched shapes raise ValueError."""
    what = case["id"].split("/")[1]
    error = observe(case, expect_error=True)
    assert error is not None, f"no error for {what}: check the arguments and raise ValueError"
    assert is_a(error, "ValueError"), (
        f"{what} raised {error.get('type')}, expected a ValueError that names the value")
