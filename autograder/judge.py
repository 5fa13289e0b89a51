"""Trusted comparisons of what the worker reported against the suites' references.

Every failure raises AssertionError whose message is the student's feedback: what is wrong and a
hint, never the hidden inputs or the grader's code.
"""
from __future__ import annotations

import base64

import numpy as np
import torch

from autograder.protocol import GRADER_ERRORS

KINDS = {"float64": np.float64, "int64": np.int64}


def decode(encoded: dict) -> torch.Tensor:
    """A tensor from the worker's plain data (float64 or int64 only; no pickle)."""
    kind = KINDS[encoded["kind"]]
    shape = [int(n) for n in encoded["shape"]]
    array = np.frombuffer(base64.b64decode(encoded["data"]), dtype=kind)
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise AssertionError("the grader got a malformed result for this case")
    return torch.from_numpy(array.copy()).reshape(shape)


def rel_error(x: torch.Tensor, y: torch.Tensor) -> float:
    """CS231n's max relative error: max |x - y| / max(1e-8, |x| + |y|)."""
    x, y = x.double(), y.double()
    return float(((x - y).abs() / (x.abs() + y.abs()).clamp(min=1e-8)).max())


def is_close(actual, expected, rtol=1e-5, atol=1e-6) -> bool:
    if expected is None or actual.shape != expected.shape:
        return False
    try:
        torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol)
        return True
    except AssertionError:
        return False


def assert_matches(actual, expected, *, what: str, mistakes=(), rtol=1e-5, atol=1e-6):
    """assert_close, with the hint of the first known mistake that reproduces `actual`."""
    if tuple(actual.shape) != tuple(expected.shape):
        for hint, variant in mistakes:
            if variant is not None and tuple(variant.shape) == tuple(actual.shape):
                raise AssertionError(f"{what}: expected shape {list(expected.shape)}, got "
                                     f"{list(actual.shape)}. {hint}")
        raise AssertionError(f"{what}: expected shape {list(expected.shape)}, got {list(actual.shape)}")
    if not torch.isfinite(actual).all() and torch.isfinite(expected).all():
        raise AssertionError(f"{what}: got inf or nan where the answer is finite. {NONFINITE_HINT}")
    try:
        torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=atol,
                                   msg=lambda _: "")
    except AssertionError:
        for hint, variant in mistakes:
            if variant is not None and is_close(actual, variant, rtol, atol):
                raise AssertionError(f"{what} is wrong. {hint}") from None
        raise AssertionError(f"{what} differs from the expected values (max relative error "
                             f"{rel_error(actual, expected):.1e}).") from None


NONFINITE_HINT = ("Large logits overflow exp(): subtract the row maximum first, or use "
                  "torch.softmax / F.log_softmax, which do it for you.")


def tensor_of(obs: dict, fn: str) -> tuple[torch.Tensor, dict]:
    """The returned tensor (float64/int64) and its description; AssertionError if not a tensor."""
    out = obs["out"]
    if not out.get("is_tensor"):
        raise AssertionError(f"{fn} returned a {out.get('type')}, expected a torch.Tensor")
    return decode(out["tensor"]), out


def student_error_message(fn: str, error: dict, *, load: bool = False) -> str:
    """Feedback for a case where the student's function raised or could not run."""
    kind, message = error.get("type", "Error"), error.get("message", "")
    if kind == "NotImplementedError":
        return f"{fn} is not implemented yet (it raises NotImplementedError)"
    if kind in GRADER_ERRORS:
        return f"{fn}: {message}"
    where = "while its cell was run" if load else "on this case"
    return f"{fn} raised {kind} {where}: {message[:120]}"
