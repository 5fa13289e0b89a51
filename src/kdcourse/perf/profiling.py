"""Timing and profiling of training steps: wall time with GPU syncs, peak memory, and where a step's
GPU time goes (`kernel_table`: host vs GPU milliseconds per step, GPU time by kernel class, the
longest kernels). Used by `kdcourse.perf.bench`; works on CPU too (no GPU figures there)."""
from __future__ import annotations

import contextlib
import logging
import time

import torch

logger = logging.getLogger(__name__)


class Timer:
    """Wall time of a region, synchronising the GPU at both ends (its work is asynchronous)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


@contextlib.contextmanager
def peak_memory(device: str, into: dict):
    """Sets `into["peak_memory_gb"]`: the GPU memory allocated at most inside the block (None on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    yield
    into["peak_memory_gb"] = (torch.cuda.max_memory_allocated() / 2**30
                              if device.startswith("cuda") else None)


# GPU kernels by what they do, matched in this order on the lower-cased kernel name: where a step's time
# goes (cuBLAS/CUTLASS matrix products, SDPA/flash attention, fused AdamW, ...). Inductor's kernels
# are sorted by `kernel_class` itself: its templates are matrix products or FlexAttention.
KERNEL_CLASSES = (
    ("attention", ("fmha", "flash", "attention", "sdpa")),
    ("matrix", ("gemm", "nvjet", "xmma", "cutlass")),
    ("optimizer", ("adam",)),
    ("copies", ("memcpy", "memset", "copy_kernel", "direct_copy", "catarray", "index")),
    ("elementwise", ("elementwise", "reduce", "softmax", "norm")),
)


def kernel_class(name: str) -> str:
    """The class of a GPU kernel by its name: a KERNEL_CLASSES label, "triton" (Inductor's fused
    kernels) or "other"."""
    name = name.lower()
    if name.startswith("triton_"):
        if "flex" in name or "attention" in name:
            return "attention"
        return "matrix" if name.startswith("triton_tem") else "triton"
    return next((label for label, parts in KERNEL_CLASSES if any(p in name for p in parts)), "other")


def kernel_budget(kernels, steps: int, top: int) -> dict:
    """kernels: (name, self GPU microseconds, calls) of each distinct kernel over `steps` steps ->
    {"gpu_ms_by_class": {class: ms per step}, "top_kernels": [[name, ms per step, calls per step]]}."""
    by_class: dict[str, float] = {}
    for name, micros, _ in kernels:
        by_class[kernel_class(name)] = by_class.get(kernel_class(name), 0.0) + micros / 1e3 / steps
    ranked = sorted(kernels, key=lambda k: -k[1])[:top]
    return {"gpu_ms_by_class": dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
            "top_kernels": [[name[:120], micros / 1e3 / steps, calls / steps] for name, micros, calls in ranked]}


def kernel_table(step, batches, rows: int, cuda: bool) -> dict:
    """Profile `step` on `batches`: host time and GPU kernel time per step (a step whose host time
    exceeds its GPU time is launch-bound), the `rows` most expensive operations and, on a GPU, the
    kernels' time per step by class (`kernel_budget`) with the `rows` longest kernels by name."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for batch in batches:
            step(batch)
        if cuda:
            torch.cuda.synchronize()
    events = prof.key_averages()
    table = events.table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=rows,
                         max_name_column_width=60)
    host_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / len(batches)
    # Kernels only: an operator's row repeats the time of the kernels it launched.
    kernels = [(e.key, e.self_device_time_total, e.count) for e in events
               if e.device_type == torch.autograd.DeviceType.CUDA]
    gpu_ms = sum(micros for _, micros, _ in kernels) / 1e3 / len(batches)
    budget = kernel_budget(kernels, len(batches), rows) if cuda else {}
    logger.info("profiled %d steps: host %.1f ms, GPU kernels %.1f ms per step %s\n%s", len(batches), host_ms,
                gpu_ms, budget.get("gpu_ms_by_class", ""), table)
    return {"kernel_table": table, "profiled_host_ms": host_ms, "profiled_gpu_ms": gpu_ms, **budget}
