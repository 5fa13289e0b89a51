"""Small helpers shared by notebooks and scripts: seeding, device choice, autocast, batches to the
device, progress bars."""
from __future__ import annotations

import os
import random

import numpy as np
import torch
from tqdm.auto import tqdm  # noqa: F401  (re-exported: one progress-bar style everywhere)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and CUDA) so runs repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def pick_device(preferred: str | None = None) -> str:
    """`preferred` if given, else "cuda" when a GPU is visible, else "cpu"."""
    if preferred:
        if preferred.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {preferred!r} asked for, but no CUDA GPU is visible; "
                               "use device='cpu' or the cpu profile")
        return preferred
    return "cuda" if torch.cuda.is_available() else "cpu"


def autocast(device: str, dtype: torch.dtype | None):
    """`torch.autocast` to `dtype` on `device`'s type (bf16 on a GPU), or a context doing nothing
    where `dtype` is None (fp32, e.g. on CPU)."""
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def to_device(batch: dict, device: str) -> dict:
    """A collated batch with its tensors on `device` (non-blocking: overlaps a pinned copy with the
    GPU's work); other values (ints, lists) as they are."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def __getattr__(name: str):
    """`kdcourse.utils.MasterWeights` moved to kdcourse.perf.master_weights; the old name still
    resolves for a while, with a DeprecationWarning (the student kit, without perf, has neither)."""
    if name == "MasterWeights":
        import importlib
        import warnings
        warnings.warn("kdcourse.utils.MasterWeights moved to kdcourse.perf.master_weights: import it "
                      "from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module("kdcourse.perf.master_weights").MasterWeights
    raise AttributeError(f"module 'kdcourse.utils' has no attribute {name!r}")
