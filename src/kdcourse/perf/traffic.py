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

    python -m kdcourse.perf.traffic --profile gpu --batch_size 128   # CPU compiles: see docs/benchmarks.md
    python -m kdcourse.perf.traffic --profile smoke                  # the command itself, seconds

On CPU the kernels are Inductor's C++ ones, fused by the same scheduler as the GPU's Triton kernels;
fusion may differ in detail, so the figures are an estimate of the GPU's, and a GPU run counts its own.
The fused AdamW step (not compiled) is added as 28 bytes a parameter: reads weight, gradient and two
moments in fp32, writes three; with `--bf16_weights` (`kdcourse.perf.master_weights`) 12 more for
the gradient's cast to fp32 and the master copy's back to bf16.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

import torch

from kdcourse.errors import run_cli
from kdcourse.perf.flops import PEAK_BF16, flops_per_sequence, non_embedding_params
from kdcourse.perf.inductor_bytes import record_kernels, totals
from kdcourse.perf.master_weights import MasterWeights
from kdcourse.perf.workload import (MEDIAN_LENGTH, PAD_TO_MULTIPLE_OF, TRAIN_TEXTS, bench_model_config,
                                    build_model, random_examples)
from kdcourse.utils import autocast, pick_device

logger = logging.getLogger(__name__)

# HBM bandwidth from the vendors' datasheets (bytes/s), by a name fragment as flops.PEAK_BF16.
BANDWIDTH = {"H100 PCIe": 2.0e12, "H100": 3.35e12, "H200": 4.8e12, "GH200": 4.0e12, "A100": 2.0e12,
             "L40S": 0.864e12, "L4": 0.3e12, "A10G": 0.6e12}
ADAMW_BYTES_PER_PARAM = 28  # fp32: reads weight, grad, exp_avg, exp_avg_sq; writes weight, exp_avg, exp_avg_sq
MASTER_BYTES_PER_PARAM = 12  # MasterWeights: bf16 grad -> fp32 (2 + 4), fp32 master -> bf16 weight (4 + 2)


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
                               "(kdcourse.perf.master_weights) instead of fp32 weights under autocast"})
    out_dir: str | None = field(default=None, metadata={"help": "folder of traffic.json (default runs/<profile>); "
                                "a path ending in .json is the file itself, as the deprecated --out named it"})
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
    from kdcourse.data import LengthGroupedBatchSampler, PadCollator
    model = build_model(config, "meta")  # shapes only: parameter counts without allocating
    n_params = non_embedding_params(model)
    max_length = profile.max_length
    examples = random_examples(TRAIN_TEXTS, max_length, min(MEDIAN_LENGTH, max_length), config.vocab_size,
                               config.num_labels)
    lengths = [len(e["input_ids"]) for e in examples]
    batches = LengthGroupedBatchSampler(lengths, batch_size).batches()
    collate = PadCollator(config.pad_token_id, PAD_TO_MULTIPLE_OF)
    positions = sum(len(b) * collate.padded_length(max(lengths[i] for i in b)) for b in batches)
    flops = sum(flops_per_sequence(config, n_params, n) for n in lengths)
    return {"tokens": sum(lengths) / len(batches), "positions": positions / len(batches),
            "flops": flops / len(batches), "padded_length": positions / len(lengths),
            "params": sum(p.numel() for p in model.parameters())}


def run_traffic(cfg: TrafficConfig) -> dict:
    from kdcourse.profiles import get_profile
    profile = get_profile(cfg.profile)
    config = bench_model_config(profile, "student", attention="sdpa")
    step = epoch_step(profile, config, cfg.batch_size or profile.train_batch_size)
    length = cfg.length or PAD_TO_MULTIPLE_OF * round(step["padded_length"] / PAD_TO_MULTIPLE_OF)
    device = pick_device(cfg.device)  # a clear error when cuda is asked for and none is visible
    model = build_model(config, device).train()
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
        peak = PEAK_BF16[card]
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

    from kdcourse.cli import parse_config
    from kdcourse.paths import RUNS_DIR, move_to_history
    (cfg,) = parse_config(TrafficConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run_traffic(cfg)
    out = Path(cfg.out_dir or RUNS_DIR / cfg.profile)
    out = out if out.suffix == ".json" else out / "traffic.json"  # a .json path: the file, as --out named it
    out.parent.mkdir(parents=True, exist_ok=True)
    move_to_history(out.parent, [out.name])
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(format_report(results) + f"\nresults -> {out}")
    return results


if __name__ == "__main__":
    run_cli(main)
