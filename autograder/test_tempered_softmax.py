"""Hidden suite of tempered_softmax(logits, temperature=1.0, dim=-1) = softmax(logits / T)."""
import pytest
import torch

from autograder.cases import make_logits
from autograder.judge import assert_matches, tensor_of
from autograder.protocol import is_a

FN = "tempered_softmax"


def case(label, logits, **kwargs):
    return {"id": f"{FN}/{label}", "fn": FN, "kind": "softmax", "logits": logits, "kwargs": kwargs}


def reference(logits, temperature=1.0, dim=-1):
    """Shift by the max along dim, exponentiate, normalise (float64)."""
    z = logits.double() / temperature
    e = torch.exp(z - z.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim, keepdim=True)


def mistakes(logits, temperature, dim=-1):
    x = logits.double()
    after = reference(x, 1.0, dim)
    return [
        ("Divide the logits by the temperature; it looks like you multiplied by it.",
         reference(x * temperature, 1.0, dim)),
        ("The temperature is ignored: use softmax(logits / temperature).", after),
        ("Apply the temperature to the logits before the softmax, not to its output.",
         after / temperature),
        ("Apply the temperature to the logits before the softmax, not to its output.",
         reference(after.log() / temperature, 1.0, dim)),
        ("The softmax runs along the last dimension instead of `dim`: pass dim to the softmax.",
         reference(x, temperature, -1)),
    ]


VALUES = [case(f"T={t}", {"shape": [4, 7], "seed": 10 + i}, temperature=t)
          for i, t in enumerate([0.5, 2.0, 4.0])]
DIMS = [case(f"dim={d}", {"shape": [3, 4, 5], "seed": 20 + d}, temperature=2.0, dim=d) for d in (0, 1)]
DEFAULT = case("default-temperature", {"shape": [5, 6], "seed": 30})
LARGE = case("large-logits", {"shape": [4, 6], "seed": 31, "scale": 1000.0, "shift": 2000.0},
             temperature=2.0)
FLOAT64 = case("float64", {"shape": [3, 5], "seed": 32, "dtype": "float64"}, temperature=3.0)
EQUAL = case("equal-logits", {"shape": [2, 5], "constant": 7.0}, temperature=0.7)
BAD_T = [case(f"T={t}", {"shape": [2, 3], "seed": 33}, temperature=t) for t in (0.0, -1.0)]


@pytest.mark.points(1)
@pytest.mark.parametrize("case", VALUES, ids=lambda c: c["id"].split("/")[1])
def test_matches_softmax_of_logits_over_T(case, observe):
    """Values equal softmax(logits / T) along the last dimension."""
    out, _ = tensor_of(observe(case), FN)
    logits, t = make_logits(case["logits"]), case["kwargs"]["temperature"]
    assert_matches(out, reference(logits, t), what=f"tempered_softmax at T={t}",
                   mistakes=mistakes(logits, t), rtol=1e-4, atol=1e-6)


@pytest.mark.points(1)
@pytest.mark.parametrize("case", [DEFAULT], ids=["default"])
def test_default_temperature_is_plain_softmax(case, observe):
    """Without a temperature argument it is torch.softmax along the last dimension."""
    out, _ = tensor_of(observe(case), FN)
    assert_matches(out, torch.softmax(make_logits(case["logits"]).double(), -1),
                   what="tempered_softmax with the default temperature (1.0)", rtol=1e-4)


@pytest.mark.points(1)
@pytest.mark.parametrize("case", DIMS, ids=lambda c: c["id"].split("/")[1])
def test_normalises_along_dim(case, observe):
    """The probabilities sum to one along `dim`, whichever it is."""
    out, _ = tensor_of(observe(case), FN)
    logits, dim = make_logits(case["logits"]), case["kwargs"]["dim"]
    assert_matches(out, reference(logits, 2.0, dim), what=f"tempered_softmax with dim={dim}",
                   mistakes=mistakes(logits, 2.0, dim)[-1:], rtol=1e-4)


@pytest.mark.points(1.5)
@pytest.mark.parametrize("case", [LARGE], ids=["large"])
def test_stable_for_logits_in_the_thousands(case, observe):
    """Logits around 2000 give finite, correct probabilities (no exp overflow)."""
    out, _ = tensor_of(observe(case), FN)
    assert torch.isfinite(out).all(), ("tempered_softmax returned inf or nan for logits in the "
                                       "thousands. Subtract the maximum before exp(), or use "
                                       "torch.softmax, which does it for you.")
    assert_matches(out, reference(make_logits(case["logits"]), 2.0),
                   what="tempered_softmax for logits in the thousands", rtol=1e-4, atol=1e-6)


@pytest.mark.property_check
@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", [FLOAT64, VALUES[0]], ids=["float64", "float32"])
def test_keeps_shape_and_dtype(case, observe):
    """The output has the input's shape and dtype."""
    out, info = tensor_of(observe(case), FN)
    expected_dtype = case["logits"].get("dtype", "float32")
    assert list(out.shape) == case["logits"]["shape"], (
        f"expected shape {case['logits']['shape']}, got {list(out.shape)}")
    assert info["tensor"]["dtype"] == expected_dtype, (
        f"for {expected_dtype} logits the output should be {expected_dtype}, got "
        f"{info['tensor']['dtype']}: avoid hard-coded dtypes such as .float()")


@pytest.mark.property_check
@pytest.mark.points(1)
@pytest.mark.parametrize("case", [VALUES[1]], ids=["T=2"])
def test_does_not_modify_its_input(case, observe):
    """The logits passed in are unchanged afterwards."""
    from autograder.judge import decode
    after = decode(observe(case)["input_after"])
    assert torch.equal(after, make_logits(case["logits"]).double()), (
        "tempered_softmax changed the logits it was given: in-place operations such as "
        "logits /= temperature or logits.sub_(...) modify the caller's tensor; use "
        "logits / temperature instead")


@pytest.mark.property_check
@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", [EQUAL], ids=["equal"])
def test_equal_logits_give_uniform_probabilities(case, observe):
    """A row of equal logits gives 1/num_classes everywhere."""
    out, _ = tensor_of(observe(case), FN)
    assert_matches(out, torch.full((2, 5), 0.2, dtype=torch.float64),
                   what="tempered_softmax of equal logits (should be uniform)", rtol=1e-5)


@pytest.mark.property_check
@pytest.mark.points(0.5)
@pytest.mark.parametrize("case", BAD_T, ids=lambda c: c["id"].split("/")[1])
def test_rejects_nonpositive_temperature(case, observe):
    """temperature <= 0 raises ValueError."""
    error = observe(case, expect_error=True)
    t = case["kwargs"]["temperature"]
    assert error is not None, (f"no error for temperature={t}: raise ValueError when "
                               "temperature <= 0 (dividing by it is meaningless)")
    assert is_a(error, "ValueError"), (
        f"temperature={t} raised {error.get('type')}, expected ValueError")
