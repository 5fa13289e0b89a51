"""The four measurements of `make bench`, each one row of tokens/s, MFU and peak memory:
1. `bench_reference`: the reference step, length-grouped batches with dynamic padding, pinned memory
   and non-blocking copies, bf16 autocast, fused AdamW, the notebook's `distillation_loss`
   (optionally compiled, or with bf16 weights and fp32 master copies);
2. `bench_packed`: the same step on texts packed into rows of N tokens (`kdcourse.perf.packing`);
3. `bench_soft_labels`: the teacher's forward pass in inference mode at the eval batch size, longest
   first, through the notebook's `collect_teacher_logits`;
4. `bench_trainer`: a Hugging Face `Trainer` whose `compute_loss` calls the same loss (what users
   would otherwise write: random batches, `bf16=True`, the default optimizer).
Each takes the run's `BenchConfig` (steps, loss settings, switches), a `RunContext` (device, sizes)
and the model's `SequenceFlops`.
"""
from __future__ import annotations

import functools
import itertools
import logging
import math
import tempfile
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from kdcourse.data import LengthGroupedBatchSampler, PadCollator
from kdcourse.perf.flops import SequenceFlops
from kdcourse.perf.master_weights import MasterWeights
from kdcourse.perf.profiling import Timer, kernel_table, peak_memory
from kdcourse.utils import autocast, to_device

if TYPE_CHECKING:
    from kdcourse.perf.bench import BenchConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """What every row of one bench run shares, fixed before the first row runs."""
    device: str  # "cpu" or "cuda[:i]"
    autocast_dtype: torch.dtype | None  # bf16 on a GPU; None: no autocast (fp32, or bf16 weights)
    peak: float | None  # the card's dense bf16 peak FLOP/s (flops.PEAK_BF16); None: unknown, no MFU
    batch_size: int  # texts per training step
    eval_batch_size: int  # texts per batch of the soft-label pass
    max_length: int  # longest text in tokens
    pad_token_id: int  # the collators' padding id

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


def compile_student(model, scope: str = "layers", mode: str = "default"):
    """torch.compile per encoder layer (`kdcourse.models.compile_layers`) or the whole model."""
    from kdcourse.models import compile_layers
    if scope == "model":
        return torch.compile(model, dynamic=True, mode=mode)
    return compile_layers(model, mode)


# ---------------------------------------------------------------- timing
def result_row(tokens: float, flops: float, seconds: float, peak: float | None, **extra) -> dict:
    """The row: tokens/s, TFLOP/s, MFU (None without a known peak), seconds, and `extra` as given."""
    logger.info("measured: %.0f tokens/s, %.1f TFLOP/s, MFU %s, %s", tokens / seconds, flops / seconds / 1e12,
                f"{flops / seconds / peak:.3f}" if peak else "n/a",
                {k: v for k, v in extra.items() if k != "kernel_table"})
    return {"tokens_per_s": tokens / seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / peak if peak else None, "seconds": seconds, **extra}


def distillation_step(forward, loss_fn, optimizer, cfg: BenchConfig, ctx: RunContext):
    """One training step on a batch from a collator: to the device (non-blocking), `forward(batch)` ->
    logits [texts, num_labels] under autocast, the graded loss, backward, optimizer. Returns the loss."""
    def step(batch):
        batch = to_device(batch, ctx.device)
        with autocast(ctx.device, ctx.autocast_dtype):
            logits = forward(batch)
        loss = loss_fn(logits, batch["teacher_logits"], batch["labels"], temperature=cfg.temperature,
                       alpha=cfg.alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def compiled_error(forward, batch: dict, device: str, autocast_dtype: torch.dtype | None) -> float | str:
    """||compiled - eager|| / ||eager|| of the logits [texts, num_labels] on one batch, same weights
    (torch.compiler's force_eager stance runs the compiled layers' Python code): a compilation that is
    fast but wrong shows here (expect bf16 rounding: report.SUSPECT_ERROR). A failure is returned as
    text."""
    batch = to_device(batch, device)
    try:
        with autocast(device, autocast_dtype):
            compiled = forward(batch).detach().float()
            with torch.compiler.set_stance("force_eager"):
                eager = forward(batch).detach().float()
        return ((compiled - eager).norm() / eager.norm()).item()
    except Exception as err:  # a diagnostic: the timed row stands without it
        return f"{type(err).__name__}: {err}"[:300]


def time_steps(name: str, step, loader, warm_batches, text_lengths, row: dict, cfg: BenchConfig,
               ctx: RunContext, flops: SequenceFlops) -> dict:
    """Run `warm_batches` untimed (compilation, CUDA-graph recording, allocator), then `cfg.warmup`
    steps of `loader`, then time `cfg.steps` more, counting tokens and FLOPs from `text_lengths(batch)`
    (real tokens per text, known on the host). Optionally profiles 3 more steps (`cfg.kernel_table`)."""
    timer = Timer(ctx.device)
    with peak_memory(ctx.device, row):
        tokens = total_flops = positions = 0.0
        for batch in warm_batches:
            step(batch)
        for i, batch in enumerate(loader):
            if i == cfg.warmup:
                start = timer.now()
            if i >= cfg.warmup:
                lengths = text_lengths(batch)
                tokens += sum(lengths)
                total_flops += sum(flops(n) for n in lengths)
                positions += batch["input_ids"].numel()
            loss = step(batch)
        seconds = timer.now() - start
    if not math.isfinite(loss.item()):
        raise RuntimeError(f"{name}: loss is {loss.item()} (random weights should not do this)")
    if cfg.kernel_table:
        row.update(kernel_table(step, warm_batches[:3], cfg.kernel_table, ctx.cuda))
    return result_row(tokens, total_flops, seconds, ctx.peak, **row, steps=cfg.steps, padding=1 - tokens / positions)


def timed_batches(examples, batches: list[list[int]], collate, cfg: BenchConfig, cuda: bool):
    """What the timed loop iterates: a DataLoader collating on the main thread inside the loop (pinned
    on CUDA), or with `cfg.precollate` the same batches collated and pinned before it."""
    if not cfg.precollate:
        return torch.utils.data.DataLoader(examples, batch_sampler=batches, collate_fn=collate, pin_memory=cuda)
    made = [collate([examples[i] for i in b]) for b in batches]
    return [{k: v.pin_memory() if cuda and torch.is_tensor(v) else v for k, v in b.items()} for b in made]


# ---------------------------------------------------------------- the rows
def bench_reference(student, examples, loss_fn, cfg: BenchConfig, ctx: RunContext, flops: SequenceFlops,
                    compiled: bool = False, bf16_weights: bool = False) -> dict:
    """The reference distillation step: grouped batches, pinned, non-blocking, bf16, fused AdamW
    (on fp32 master copies of bf16 weights with `bf16_weights`)."""
    model = compile_student(student, cfg.compile_scope, cfg.compile_mode) if compiled else student
    adamw = functools.partial(torch.optim.AdamW, lr=5e-5, fused=ctx.cuda)
    if bf16_weights:  # no autocast: it would run the norms, and so the residual stream, in fp32 on CUDA
        optimizer, ctx = MasterWeights(student, adamw), replace(ctx, autocast_dtype=None)
    else:
        optimizer = adamw(student.parameters())
    lengths = [len(e["input_ids"]) for e in examples]
    batches = LengthGroupedBatchSampler(lengths, ctx.batch_size).batches()[: cfg.warmup + cfg.steps]
    collate = PadCollator(ctx.pad_token_id, cfg.pad_to_multiple_of)
    loader = timed_batches(examples, batches, collate, cfg, ctx.cuda)

    def forward(batch):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    step = distillation_step(forward, loss_fn, optimizer, cfg, ctx)
    # Each padded shape the timed steps meet runs first, so its compilation stays out of the timing;
    # CUDA graphs record on a shape's second call and replay from its third.
    shapes = {}
    for b in batches[cfg.warmup:]:
        batch = collate([examples[i] for i in b])
        shapes.setdefault(tuple(batch["input_ids"].shape), batch)
    repeats = 3 if compiled and cfg.compile_mode == "reduce-overhead" else 1
    row = {"attention": student.config._attn_implementation, "batch_size": ctx.batch_size,
           "compiled": f"{cfg.compile_scope}/{cfg.compile_mode}" if compiled else None,
           "weights": "bf16 + fp32 master" if bf16_weights else "fp32", "precollated": cfg.precollate}
    model.train()
    result = time_steps("reference step", step, loader, list(shapes.values()) * repeats,
                        lambda batch: batch["attention_mask"].sum(1).tolist(), row, cfg, ctx, flops)
    if compiled:
        result["logits_rel_error_vs_eager"] = compiled_error(forward, next(iter(shapes.values())), ctx.device,
                                                             ctx.autocast_dtype)
    return result


def bench_packed(student, examples, loss_fn, cfg: BenchConfig, ctx: RunContext, flops: SequenceFlops,
                 compiled: bool = False) -> dict:
    """The distillation step on packed rows of `cfg.packed_tokens` tokens: one input shape, no padding
    and no masks (`kdcourse.perf.packing`); otherwise as `bench_reference`."""
    from kdcourse.perf.packing import PackedCollator, pack_by_length, packed_logits
    if compiled:
        compile_student(student, "layers", cfg.compile_mode)
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-5, fused=ctx.cuda)
    # Just enough texts to fill the packs: first-fit decreasing then spreads long and short texts evenly.
    lengths = [len(e["input_ids"]) for e in examples]
    per_pack = min(cfg.packed_tokens, (cfg.pack_max_texts or cfg.packed_tokens) * sum(lengths) / len(lengths))
    budget = 0.98 * (cfg.warmup + cfg.steps) * per_pack
    count = next((i for i, total in enumerate(itertools.accumulate(lengths)) if total > budget), len(lengths))
    packs = pack_by_length(lengths[:count], cfg.packed_tokens, cfg.pack_max_texts or None)[: cfg.warmup + cfg.steps]
    if len(packs) < cfg.warmup + cfg.steps:
        raise ValueError(f"{len(examples)} examples make only {len(packs)} packs of {cfg.packed_tokens} tokens; "
                         f"lower --packed_tokens or --steps")
    collate = PackedCollator(ctx.pad_token_id, cfg.packed_tokens, ctx.max_length, cfg.pack_max_texts or None)
    loader = timed_batches(examples, packs, collate, cfg, ctx.cuda)
    forward = functools.partial(packed_logits, student)
    step = distillation_step(forward, loss_fn, optimizer, cfg, ctx)
    row = {"attention": student.config._attn_implementation, "batch_size": f"{cfg.packed_tokens} tok",
           "compiled": f"layers/{cfg.compile_mode}" if compiled else None,
           "texts_per_step": sum(len(p) for p in packs[cfg.warmup:]) / cfg.steps,
           "max_texts": collate.max_texts, "cu_seqlens": collate.max_sequences + 1, "precollated": cfg.precollate}
    student.train()
    # One shape for all packs: three untimed steps cover compilation and CUDA-graph recording.
    warm = [collate([examples[i] for i in p]) for p in packs[:3]]
    result = time_steps("packed step", step, loader, warm, lambda batch: batch["lengths"].tolist(), row, cfg,
                        ctx, flops)
    if compiled:
        result["logits_rel_error_vs_eager"] = compiled_error(forward, warm[0], ctx.device, ctx.autocast_dtype)
    return result


@torch.inference_mode()
def bench_soft_labels(teacher, examples, collect, cfg: BenchConfig, ctx: RunContext, flops: SequenceFlops) -> dict:
    """The teacher over eval batches, longest first, through the graded collect_teacher_logits."""
    timer = Timer(ctx.device)
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    size = ctx.eval_batch_size
    collate = PadCollator(ctx.pad_token_id, cfg.pad_to_multiple_of)
    batches = [collate([examples[i] for i in order[s:s + size]]) for s in range(0, len(order), size)]
    if ctx.cuda:
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    row = {"attention": teacher.config._attn_implementation, "batch_size": size}
    with peak_memory(ctx.device, row), autocast(ctx.device, ctx.autocast_dtype):
        collect(teacher, batches[:1], ctx.device)  # warm-up: kernels, allocator
        start = timer.now()
        logits = collect(teacher, batches, ctx.device)
        seconds = timer.now() - start
    lengths = [len(e["input_ids"]) for e in examples]
    return result_row(sum(lengths), sum(flops(n) for n in lengths), seconds, ctx.peak, **row, examples=len(logits))


def bench_trainer(student, examples, loss_fn, cfg: BenchConfig, ctx: RunContext, flops: SequenceFlops) -> dict:
    """A Trainer subclass with the same loss on the same examples: what users would write."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class DistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher_logits, labels = inputs.pop("teacher_logits"), inputs.pop("labels")
            outputs = model(**inputs)
            loss = loss_fn(outputs.logits, teacher_logits, labels, temperature=cfg.temperature,
                           alpha=cfg.alpha)
            return (loss, outputs) if return_outputs else loss

    timer, marks = Timer(ctx.device), {}

    class Clock(TrainerCallback):  # global_step counts finished steps
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == cfg.warmup:
                marks["start"] = timer.now()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == cfg.warmup + cfg.steps:
                marks["end"] = timer.now()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=ctx.batch_size, learning_rate=5e-5,
            max_steps=cfg.warmup + cfg.steps, bf16=ctx.autocast_dtype is torch.bfloat16,
            report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
            remove_unused_columns=False, use_cpu=not ctx.cuda)
        trainer = DistillationTrainer(model=student, args=args, train_dataset=examples,
                                      data_collator=PadCollator(ctx.pad_token_id), callbacks=[Clock()])
        row = {"attention": student.config._attn_implementation, "batch_size": ctx.batch_size}
        with peak_memory(ctx.device, row):
            trainer.train()
    seconds = marks["end"] - marks["start"]
    # Random batches: expected tokens and FLOPs per step are the data set's means times the batch.
    mean_tokens = sum(len(e["input_ids"]) for e in examples) / len(examples)
    mean_flops = sum(flops(len(e["input_ids"])) for e in examples) / len(examples)
    n = cfg.steps * ctx.batch_size
    return result_row(n * mean_tokens, n * mean_flops, seconds, ctx.peak, **row, steps=cfg.steps,
                      optimizer=str(args.optim))
