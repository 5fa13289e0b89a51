"""The memory side of the student step: bytes its compiled kernels read and write, and the MFU that
leaves at most.

Inductor's scheduler knows, for every kernel it generates, which buffers it reads and writes. While
the whole student compiles (one forward graph and one backward graph, each run once a step), this
module records them by kind:
- `fused`: the kernels Inductor writes itself (pointwise and reductions: norms, activations, rotary,
  casts, residuals): the profile's "elementwise" and "triton" classes, bound by memory bandwidth;
- `extern`: library calls (matrix products, attention), bound by FLOPs.
With `--bf16_weights` (bf16 weights, fp32 master copies) the model runs without autocast, as the
bench's row does: CUDA's autocast would compute the norms, and so the residual stream, in fp32.
Two batch sizes of one padded length give bytes = constant + slope * positions: the constant is the
weights' side (autocast's bf16 copies of fp32 weights and their gradients' casts), the slope the
activations'. At the step's positions and the card's bandwidth, the fused bytes cost at least
`fused_ms`; even with matrix products at the card's full peak and attention free, MFU cannot pass
flops / (flops + peak * memory_seconds), memory_seconds: the fused kernels' and the optimizer's bytes
at the card's bandwidth.

    python -m kdcourse.traffic --profile gpu --batch_size 128     # ~10 min on 2 CPU cores
    python -m kdcourse.traffic --profile smoke                    # the command itself, seconds

On CPU the kernels are Inductor's C++ ones, fused by the same scheduler as the GPU's Triton kernels;
fusion may differ in detail, so the figures are an estimate of the GPU's, and a GPU run counts its own.
The fused AdamW step (not compiled) is added as 28 bytes a parameter: reads weight, gradient and two
moments in fp32, writes three; with `--bf16_weights` (`kdcourse.utils.MasterWeights`) 12 more for
the gradient's cast to fp32 and the master copy's back to bf16.
"""
from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from unittest import mock

import torch

from kdcourse.errors import run_cli
from kdcourse.utils import MasterWeights, autocast, pick_device

logger = logging.getLogger(__name__)

# HBM bandwidth from the vendors' datasheets (bytes/s), by a name fragment as bench.PEAK_BF16.
BANDWIDTH = {"H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "GH200": 4.0e12, "A100": 2.0e12,
             "L40S": 0.864e12, "L4": 0.3e12, "A10G": 0.6e12}
ADAMW_BYTES_PER_PARAM = 28  # fp32: reads weight, grad, exp_avg, exp_avg_sq; writes weight, exp_avg, exp_avg_sq
MASTER_BYTES_PER_PARAM = 12  # MasterWeights: bf16 grad -> fp32 (2 + 4), fp32 master -> bf16 weight (4 + 2)


@contextlib.contextmanager
def record_kernels():
    """Yields a list that fills with (kind, bytes read and written) for every kernel Inductor generates
    inside the block, kind in {"fused", "extern", "template"}. Compilation only: cached graphs (the
    FX graph cache, or a graph Dynamo already compiled) are not lowered again, so nothing is recorded
    for them; the caches are switched off inside the block."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.graph import GraphLowering

    from torch._inductor.scheduler import BaseSchedulerNode
    if not (hasattr(GraphLowering, "codegen") and hasattr(BaseSchedulerNode, "get_read_write_buffers_sizes")):
        raise RuntimeError(f"kdcourse.traffic reads Inductor internals (GraphLowering.codegen, scheduler nodes' "
                           f"get_read_write_buffers_sizes) that torch {torch.__version__} does not have; "
                           "use the torch pinned in requirements.txt")
    kernels: list[tuple[str, int]] = []
    codegen = GraphLowering.codegen

    def recording_codegen(graph, *args, **kwargs):
        result = codegen(graph, *args, **kwargs)
        for node in graph.scheduler.nodes:
            size = node.get_read_write_buffers_sizes()
            if size:  # views and multi-output unpacking are nodes, not kernels, and move nothing
                kind = "extern" if node.is_extern() else "template" if node.is_template() else "fused"
                kernels.append((kind, size))
        return result

    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False), \
            mock.patch.object(GraphLowering, "codegen", recording_codegen):
        yield kernels


def totals(kernels: list[tuple[str, int]]) -> dict:
    """{kind: {"kernels": count, "bytes": sum}} of `record_kernels`' list."""
    out: dict = {}
    for kind, size in kernels:
        row = out.setdefault(kind, {"kernels": 0, "bytes": 0})
        row["kernels"] += 1
        row["bytes"] += size
    return out


def step_kernels(model, batch_size: int, length: int, device: str = "cpu", amp: bool = True) -> dict:
    """Compile `model` (a sequence classifier) afresh and run one forward and backward on random ids
    [batch_size, length], under bf16 autocast if `amp`; returns `totals` of the kernels generated.
    (CPU's autocast keeps bf16 layer norms in bf16 where CUDA's computes them in fp32; with fp32
    weights the residual stream is fp32 on both.)"""
    torch._dynamo.reset()
    compiled = torch.compile(model)
    ids = torch.randint(5, model.config.vocab_size, (batch_size, length), device=device)
    with record_kernels() as kernels, autocast(device, torch.bfloat16 if amp else None):
        logits = compiled(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        logits.float().logsumexp(-1).sum().backward()  # the loss is [batch, labels]: negligible traffic
    model.zero_grad(set_to_none=True)
    return totals(kernels)


def fit(small: dict, large: dict, positions: tuple[int, int]) -> dict:
    """Per kind, bytes = constant + per_position * positions from two `step_kernels` totals."""
    out = {}
    for kind in small.keys() | large.keys():
        a, b = small.get(kind, {"bytes": 0, "kernels": 0}), large.get(kind, {"bytes": 0, "kernels": 0})
        slope = (b["bytes"] - a["bytes"]) / (positions[1] - positions[0])
        if a["kernels"] != b["kernels"]:  # the same graph at two sizes should lower to the same kernels
            logger.warning("%s: %d kernels at the small batch, %d at the large one: the fit mixes two "
                           "different fusions", kind, a["kernels"], b["kernels"])
        out[kind] = {"kernels": b["kernels"], "per_position": slope,
                     "constant": a["bytes"] - slope * positions[0]}
    return out


@dataclass
class TrafficConfig:
    profile: str = field(default="cpu", metadata={"help": "profile in configs/profiles.toml (gpu: "
                         "ModernBERT-base's shape, random weights)"})
    batch_size: int | None = field(default=None, metadata={"help": "the step to estimate (default: the "
                                   "profile's train_batch_size)"})
    length: int | None = field(default=None, metadata={"help": "padded length of the two compiled batches "
                               "(default: the epoch's mean padded length, a multiple of 8)"})
    fit_batch_sizes: list[int] = field(default_factory=lambda: [2, 4], metadata={
        "help": "the two batch sizes compiled for the fit (small: CPU compiles and runs them)"})
    bf16_weights: bool = field(default=False, metadata={"help": "bf16 weights with fp32 master copies "
                               "(kdcourse.utils.MasterWeights) instead of fp32 weights under autocast"})
    out: str | None = field(default=None, metadata={"help": "JSON file (default runs/<profile>/traffic.json)"})
    device: str = field(default="cpu", metadata={"help": "where to compile: cpu (C++ kernels) or cuda (Triton)"})

    def __post_init__(self):
        sizes = self.fit_batch_sizes
        if len(sizes) != 2 or not 0 < sizes[0] < sizes[1]:
            raise ValueError(f"fit_batch_sizes needs two increasing positive sizes, got {sizes}")
        for name in ("batch_size", "length"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def epoch_step(profile, config, batch_size: int) -> dict:
    """Mean real tokens, padded positions and model FLOPs of one step over an epoch of the bench's
    length-grouped batches (its log-normal CFPB-like lengths, padded to multiples of 8)."""
    from kdcourse import bench
    from kdcourse.data import LengthGroupedBatchSampler, PadCollator
    model = bench.build_model(config, "meta")  # shapes only: parameter counts without allocating
    n_params = bench.non_embedding_params(model)
    max_length = profile.max_length
    median = min(bench.BenchConfig.median_length, max_length)
    examples = bench.random_examples(bench.BenchConfig.train_texts, max_length, median, config.vocab_size,
                                     config.num_labels)
    lengths = [len(e["input_ids"]) for e in examples]
    batches = LengthGroupedBatchSampler(lengths, batch_size).batches()
    collate = PadCollator(config.pad_token_id, bench.BenchConfig.pad_to_multiple_of)
    positions = sum(len(b) * collate.padded_length(max(lengths[i] for i in b)) for b in batches)
    flops = sum(bench.flops_per_sequence(config, n_params, n) for n in lengths)
    return {"tokens": sum(lengths) / len(batches), "positions": positions / len(batches),
            "flops": flops / len(batches), "padded_length": positions / len(lengths),
            "params": sum(p.numel() for p in model.parameters())}


def run_traffic(cfg: TrafficConfig) -> dict:
    from kdcourse import bench
    from kdcourse.profiles import get_profile
    profile = get_profile(cfg.profile)
    config = bench.bench_model_config(profile, "student", attention="sdpa")
    step = epoch_step(profile, config, cfg.batch_size or profile.train_batch_size)
    multiple = bench.BenchConfig.pad_to_multiple_of
    length = cfg.length or multiple * round(step["padded_length"] / multiple)
    device = pick_device(cfg.device)  # a clear error when cuda is asked for and none is visible
    model = bench.build_model(config, device).train()
    if cfg.bf16_weights:
        MasterWeights(model, lambda params: None)  # the optimizer's side is counted below
    # bf16 weights run without autocast, as in the bench (CUDA's autocast would make the residual stream fp32)
    small, large = (step_kernels(model, size, length, device, amp=not cfg.bf16_weights)
                    for size in cfg.fit_batch_sizes)
    kinds = fit(small, large, tuple(size * length for size in cfg.fit_batch_sizes))
    fused = kinds["fused"]["constant"] + kinds["fused"]["per_position"] * step["positions"]
    adamw = (ADAMW_BYTES_PER_PARAM + MASTER_BYTES_PER_PARAM * cfg.bf16_weights) * step["params"]
    cards = {}
    for card, bandwidth in BANDWIDTH.items():
        peak = bench.PEAK_BF16[card]
        memory_s = (fused + adamw) / bandwidth
        cards[card] = {"fused_ms": 1e3 * fused / bandwidth, "adamw_ms": 1e3 * adamw / bandwidth,
                       "matrix_at_peak_ms": 1e3 * step["flops"] / peak,
                       "mfu_ceiling": step["flops"] / (step["flops"] + peak * memory_s)}
    return {"config": asdict(cfg), "profile": profile.name, "length": length, "step": step,
            "kinds": kinds, "fit_points": {"small": small, "large": large},
            "fused_bytes_per_step": fused, "adamw_bytes_per_step": adamw, "cards": cards}


def format_report(r: dict) -> str:
    s = r["step"]
    lines = [f"traffic {r['profile']}: a step of {s['tokens']:,.0f} tokens in {s['positions']:,.0f} positions "
             f"(compiled at length {r['length']}), {s['flops'] / 1e12:.1f} TFLOP, {s['params'] / 1e6:.4g}M parameters"]
    for kind, k in sorted(r["kinds"].items()):
        lines.append(f"  {kind:<8} {k['kernels']:>5} kernels  {k['per_position'] / 1e3:>9,.1f} kB a position  "
                     f"+ {k['constant'] / 1e9:.2f} GB a step")
    weights = "bf16 weights, fp32 master copies" if r["config"].get("bf16_weights") else "fp32 weights, bf16 autocast"
    lines.append(f"  fused kernels {r['fused_bytes_per_step'] / 1e9:.1f} GB a step, fused AdamW "
                 f"{r['adamw_bytes_per_step'] / 1e9:.1f} GB ({weights})")
    lines.append(f"  {'card':<10}{'fused ms':>10}{'AdamW ms':>10}{'matrix ms at peak':>19}{'MFU ceiling':>13}")
    for card, c in r["cards"].items():
        lines.append(f"  {card:<10}{c['fused_ms']:>10.1f}{c['adamw_ms']:>10.1f}{c['matrix_at_peak_ms']:>19.1f}"
                     f"{100 * c['mfu_ceiling']:>12.1f}%")
    return "\n".join(lines)


def main(argv=None) -> dict:
    from pathlib import Path

    from transformers import HfArgumentParser

    from kdcourse.paths import RUNS_DIR, move_to_history
    (cfg,) = HfArgumentParser(TrafficConfig).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run_traffic(cfg)
    out = Path(cfg.out or RUNS_DIR / cfg.profile / "traffic.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    move_to_history(out.parent, [out.name])
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(format_report(results) + f"\nresults -> {out}")
    return results


if __name__ == "__main__":
    run_cli(main)
