"""What `make bench` prints and compares: the throughput ratios between the rows that were measured,
the check that marks a compiled row whose logits are off its eager model's, and the table."""
from __future__ import annotations

# Compiled logits further than this from eager ones (relative norm) mark a row as suspect: bf16 kernels
# differ by less (the gpu attention tests accept 2e-2 between SDPA, FlashAttention and FlexAttention).
SUSPECT_ERROR = 2e-2


def suspect(error: float | str | None) -> bool:
    """Whether a compiled row's `logits_rel_error_vs_eager` (None: not compiled) says its logits are
    off its eager model's, or could not be checked: its speed is reported, but it counts in no ratio."""
    return error is not None and not (isinstance(error, float) and error <= SUSPECT_ERROR)


def ratios(results: dict) -> dict:
    """Throughput ratios between the rows that were measured (a suspect compiled row counts in none)."""
    speed = {name: results[name]["tokens_per_s"] for name in ("reference", "trainer", "soft_labels")
             if name in results}
    for name, row in (("compiled", results.get("reference_compiled")), ("bf16", results.get("reference_bf16_weights"))):
        if row and not suspect(row.get("logits_rel_error_vs_eager")):
            speed[name] = row["tokens_per_s"]
    bf16_baseline = "compiled" if results.get("reference_bf16_weights", {}).get("compiled") else "reference"
    pairs = {"reference_over_trainer": ("reference", "trainer"), "compiled_over_eager": ("compiled", "reference"),
             "compiled_over_trainer": ("compiled", "trainer"),
             "soft_labels_over_reference": ("soft_labels", "reference"),
             "bf16_weights_over_fp32": ("bf16", bf16_baseline)}  # same compilation, fp32 weights under autocast
    return {name: speed[a] / speed[b] for name, (a, b) in pairs.items() if a in speed and b in speed}


def format_error(error: float | str) -> str:
    """A compiled row's logits error as the table shows it: a percentage, SUSPECT past SUSPECT_ERROR."""
    if not isinstance(error, float):
        return f"failed ({error[:80]})"
    return f"{100 * error:.2f}%" + (" SUSPECT: not the eager model's result" if suspect(error) else "")


def format_table(results: dict) -> str:
    """The run's header, one line per measured row (and its GPU time by kernel class), the ratios
    and the rows that failed."""
    teacher = f", teacher {results['teacher_params'] / 1e6:.1f}M" if "teacher_params" in results else ""
    lines = [f"bench {results['profile']} on {results['device']} (torch {results['torch']}, max length "
             f"{results['max_length']}, mean length {results['mean_length']:.0f}; student "
             f"{results['student_params'] / 1e6:.1f}M{teacher} parameters"
             + (", Inductor coordinate-descent tuning" if results.get("inductor", {}).get("coordinate_descent_tuning")
                else "") + (", batches collated before the timed loop" if results["config"].get("precollate") else "")
             + ")",
             f"{'measurement':<28}{'attention':<30}{'batch':>6}{'pad':>6}{'tokens/s':>12}{'TFLOP/s':>9}{'MFU':>8}"
             f"{'mem GB':>8}"]
    names = ["reference", *(k for k in results if k.startswith("reference_") and isinstance(results[k], dict)),
             "trainer", "soft_labels"]
    for name in names:
        if name in results:
            r = results[name]
            mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
            mem = f"{r['peak_memory_gb']:.1f}" if r["peak_memory_gb"] is not None else "n/a"
            attention = (r.get("attention", results["attention"]) + (" +compile" if r.get("compiled") else "")
                         + (" +bf16" if r.get("weights", "").startswith("bf16") else ""))
            batch = r.get("batch_size", "")
            padding = f"{100 * r['padding']:.0f}%" if "padding" in r else ""
            lines.append(f"{name:<28}{attention:<30}{batch:>6}{padding:>6}{r['tokens_per_s']:>12,.0f}"
                         f"{r['tflops']:>9.1f}{mfu:>8}{mem:>8}"
                         + (f"  host {r['profiled_host_ms']:.0f} / GPU {r['profiled_gpu_ms']:.0f} ms per step"
                            if "profiled_host_ms" in r else "")
                         + (f"  logits vs eager {format_error(r['logits_rel_error_vs_eager'])}"
                            if "logits_rel_error_vs_eager" in r else ""))
            if r.get("gpu_ms_by_class"):
                lines.append("    GPU ms/step: " + ", ".join(f"{k} {v:.1f}" for k, v in r["gpu_ms_by_class"].items()))
    lines += [f"{k}: {v:.2f}x" for k, v in results["ratios"].items()]
    for name, error in results.get("errors", {}).items():
        lines.append(f"{name} failed: {error[:300]}")
    return "\n".join(lines)
