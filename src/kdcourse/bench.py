"""Tokens/s, MFU and peak memory of the distillation step, the soft-label pass and a Trainer baseline.

    make bench PROFILE=gpu      # ModernBERT-base student, ModernBERT-large teacher, bf16, one GPU
    make bench                  # the cpu profile's tiny models: checks that the command runs
    python -m kdcourse.bench --profile gpu --steps 30 --compile true

Random weights (the exact ModernBERT-base/-large shapes when the profile names hub models, so no
download) and random token ids with CFPB-like lengths. Three measurements on the same examples:
1. `reference`: the reference step, length-grouped batches with dynamic padding, pinned memory and
   non-blocking copies, bf16 autocast, fused AdamW, the notebook's `distillation_loss`;
2. `soft_labels`: the teacher's forward pass in inference mode at the eval batch size, longest first;
3. `trainer`: a Hugging Face `Trainer` whose `compute_loss` calls the same loss (what users would
   otherwise write: random batches, `bf16=True`, the default optimizer).
MFU counts training FLOPs per token as 6N (N: parameters outside the token embedding) plus the
attention term 12 * layers' d_model * context (context: the text's length on global layers, at most
the window on local ones), against the card's dense bf16 peak. Imports nothing from `datasets`.
"""
from __future__ import annotations

import functools
import itertools
import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from kdcourse.data import LengthGroupedBatchSampler, PadCollator
from kdcourse.errors import run_cli
from kdcourse.models import MODERNBERT, MODERNBERT_SHARED, expand_released
from kdcourse.profiling import Timer, kernel_table, peak_memory
from kdcourse.utils import MasterWeights, autocast, to_device

logger = logging.getLogger(__name__)

# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s), by a name fragment.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10G": 70e12}


@dataclass
class BenchConfig:
    profile: str = field(default="cpu", metadata={"help": "profile in configs/profiles.toml (cpu, gpu, smoke)"})
    steps: int = field(default=20, metadata={"help": "timed training steps per measurement"})
    warmup: int = field(default=5, metadata={"help": "untimed steps first (allocator, kernels, compile)"})
    batch_size: int | None = field(default=None, metadata={"help": "default: the profile's train_batch_size"})
    eval_batch_size: int | None = field(default=None, metadata={"help": "default: the profile's eval_batch_size"})
    max_length: int | None = field(default=None, metadata={"help": "default: the profile's max_length"})
    median_length: int = field(default=180, metadata={"help": "median text length in tokens (CFPB: ~180 "
                                                       "ModernBERT tokens; log-normal, clipped at max_length)"})
    soft_label_batches: int = field(default=8, metadata={"help": "eval batches of the soft-label pass "
                                    "(0: skip it, and the teacher)"})
    eager: bool = field(default=True, metadata={"help": "time the eager reference step, the ratios' baseline "
                        "(false: another row set measured it on this machine; the other rows still run)"})
    trainer: bool = field(default=True, metadata={"help": "also time the Hugging Face Trainer baseline"})
    attention: str = field(default="auto", metadata={"help": "attention of the reference step: auto "
                           "(flash_attention_2 if installed, else sdpa), sdpa, kd_varlen, flex_attention (GPU), "
                           "flash_attention_2, eager"})
    compare_attention: list[str] = field(default_factory=list, metadata={
        "help": "also time the reference step with these attention implementations (e.g. sdpa kd_varlen)"})
    compile: bool = field(default=False, metadata={"help": "also time the reference step under torch.compile"})
    compile_scope: str = field(default="layers", metadata={"help": "layers: compile each encoder layer "
                               "(one compilation shared by all 22); model: the whole model"})
    compile_mode: str = field(default="default", metadata={"help": "torch.compile mode: default, "
                              "reduce-overhead (CUDA graphs: fewer launches), max-autotune-no-cudagraphs"})
    bf16_weights: bool = field(default=False, metadata={"help": "also time the reference step (compiled with "
                               "--compile) with bf16 weights and fp32 master copies (kdcourse.utils.MasterWeights): "
                               "no autocast, so the residual stream is bf16 too"})
    packed_tokens: int = field(default=0, metadata={"help": "also time the step on texts packed into rows of "
                               "this many tokens (kdcourse.packing; kd_varlen or flash_attention_2); 0: off"})
    pack_max_texts: int = field(default=0, metadata={"help": "at most this many texts per packed row (0: "
                                "packed_tokens // 8): fewer cu_seqlens boundaries, fewer empty kernel blocks"})
    precollate: bool = field(default=False, metadata={"help": "collate (and pin) every timed batch before the "
                             "timed loop, instead of a DataLoader collating on the main thread inside it"})
    coordinate_descent_tuning: bool = field(default=False, metadata={"help": "set Inductor's "
                                            "coordinate_descent_tuning for this run's compilations (Triton "
                                            "kernels' block sizes tuned by measurement: longer compiles)"})
    kernel_table: int = field(default=0, metadata={"help": "profile 3 steps of each reference measurement: host "
                              "and GPU time per step, GPU time by kernel class (matrix, attention, triton, ...) "
                              "and the top N operations and kernels (0: off)"})
    train_texts: int = field(default=7672, metadata={"help": "texts the length-grouped batches are drawn "
                             "from, as one epoch of the CFPB training split (7,672): the timed steps are that "
                             "epoch's first batches, so their padding is the real run's"})
    pad_to_multiple_of: int = field(default=8, metadata={"help": "round padded lengths up to this (reference "
                                    "and soft labels; the Trainer pads to the longest). 8: 3-7%% padding at "
                                    "batch 32-256; 64: fewer shapes to compile, 14-18%% padding"})
    cudnn_attention: bool = field(default=False, metadata={"help": "let SDPA use cuDNN attention, which "
                                  "plans per new shape: slow with dynamic padding"})
    extra_batch_sizes: list[int] = field(default_factory=list, metadata={
        "help": "also time the reference step at these batch sizes (larger batches fill the GPU)"})
    temperature: float = field(default=4.0, metadata={"help": "T of the loss (does not change the cost)"})
    alpha: float = field(default=0.9, metadata={"help": "alpha of the loss"})
    out: str | None = field(default=None, metadata={"help": "JSON file for the results (default "
                                                     "runs/<profile>/bench.json)"})
    device: str | None = field(default=None, metadata={"help": "cpu or cuda (default: cuda if visible)"})

    def __post_init__(self):
        if self.steps < 1 or self.warmup < 0:
            raise ValueError(f"steps must be >= 1 and warmup >= 0, got {self.steps} and {self.warmup}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (leave it out for the profile's), got {getattr(self, name)}")
        if self.pack_max_texts < 0:
            raise ValueError(f"pack_max_texts must be >= 0 (0: packed_tokens // 8), got {self.pack_max_texts}")
        if self.packed_tokens < 0 or any(size < 1 for size in self.extra_batch_sizes):
            raise ValueError(f"packed_tokens must be >= 0 (0: no packed row) and extra_batch_sizes >= 1, got "
                             f"{self.packed_tokens} and {self.extra_batch_sizes}")
        if self.soft_label_batches < 0:
            raise ValueError(f"soft_label_batches must be >= 0 (0 skips the pass), got {self.soft_label_batches}")
        if not (self.eager or self.compile or self.compare_attention or self.extra_batch_sizes
                or self.packed_tokens or self.trainer or self.soft_label_batches or self.bf16_weights):
            raise ValueError("nothing to measure: every row is switched off (--eager false, --trainer false, "
                             "--soft_label_batches 0 and no --compile, --compare_attention, --extra_batch_sizes, "
                             "--packed_tokens or --bf16_weights)")
        if self.compile_scope not in ("layers", "model"):
            raise ValueError(f"compile_scope must be 'layers' or 'model', got {self.compile_scope!r}")


# ---------------------------------------------------------------- models and FLOPs
def bench_model_config(profile, role: str, num_labels: int = 8, attention: str = "auto"):
    """A ModernBertConfig for the profile's teacher or student: the released shape for hub models,
    the profile's tiny shape otherwise (vocab from the profile; no tokenizer needed)."""
    from transformers import ModernBertConfig

    from kdcourse.models import resolve_attention
    overrides = profile.teacher_config if role == "teacher" else profile.student_config
    name = profile.teacher if role == "teacher" else profile.student
    if overrides:
        values = dict(MODERNBERT_SHARED, vocab_size=profile.vocab_size, pad_token_id=0, bos_token_id=2,
                      eos_token_id=3, cls_token_id=2, sep_token_id=3,
                      local_attention=max(128, 2 * profile.max_length)) | expand_released(overrides)
    else:
        values = dict(MODERNBERT_SHARED, **MODERNBERT["large" if "large" in name.lower() else "base"])
    config = ModernBertConfig(num_labels=num_labels, **values)
    config._attn_implementation = resolve_attention(attention)
    return config


def build_model(config, device: str, seed: int = 0):
    """Random init straight on the device (seconds for the 395M teacher, not a minute on CPU)."""
    from transformers import AutoModelForSequenceClassification
    torch.manual_seed(seed)
    with torch.device(device):
        return AutoModelForSequenceClassification.from_config(
            config, attn_implementation=config._attn_implementation)


def compile_student(model, scope: str = "layers", mode: str = "default"):
    """torch.compile per encoder layer (`kdcourse.models.compile_layers`) or the whole model."""
    from kdcourse.models import compile_layers
    if scope == "model":
        return torch.compile(model, dynamic=True, mode=mode)
    return compile_layers(model, mode)


def non_embedding_params(model) -> int:
    """Parameters that multiply activations (the token-embedding lookup does not)."""
    return sum(p.numel() for name, p in model.named_parameters() if "tok_embeddings" not in name)


def flops_per_sequence(config, n_params: int, length: int, training: bool = True) -> float:
    """Model FLOPs of one sequence of `length` tokens: 2N per token forward (x3 with backward),
    plus attention scores and values, 4 * d_model * context per token and layer (x3 with backward);
    the context is the whole text on global layers and at most the window on local layers."""
    global_every = config.global_attn_every_n_layers
    window = config.local_attention + 1  # ModernBERT's local layers see +-local_attention/2 tokens
    context = sum(length if layer % global_every == 0 else min(length, window)
                  for layer in range(config.num_hidden_layers))
    factor = 3 if training else 1
    return factor * length * (2 * n_params + 4 * config.hidden_size * context)


def peak_flops(device: str) -> tuple[str, float | None]:
    """(device name, dense bf16 peak FLOP/s or None when unknown, e.g. a CPU)."""
    if not device.startswith("cuda"):
        return "cpu", None
    name = torch.cuda.get_device_name(torch.device(device))
    for fragment, peak in PEAK_BF16.items():  # "H100 PCIe" before "H100"
        if fragment in name:
            return name, peak
    return name, None


# ---------------------------------------------------------------- data
def random_examples(n: int, max_length: int, median_length: int, vocab_size: int, num_labels: int,
                    seed: int = 0) -> list[dict]:
    """`n` unpadded examples: token ids, a label and teacher logits, log-normal lengths."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.exp(math.log(median_length) + 0.7 * torch.randn(n, generator=g))
    lengths = lengths.round().clamp(8, max_length).long().tolist()
    return [{"input_ids": torch.randint(5, vocab_size, (length,), generator=g).tolist(),
             "label": int(torch.randint(0, num_labels, (1,), generator=g)),
             "teacher_logits": (3 * torch.randn(num_labels, generator=g)).tolist()} for length in lengths]


# ---------------------------------------------------------------- timing
def result_row(tokens: float, flops: float, seconds: float, peak: float | None, **extra) -> dict:
    logger.info("measured: %.0f tokens/s, %.1f TFLOP/s, MFU %s, %s", tokens / seconds, flops / seconds / 1e12,
                f"{flops / seconds / peak:.3f}" if peak else "n/a",
                {k: v for k, v in extra.items() if k != "kernel_table"})
    return {"tokens_per_s": tokens / seconds, "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / peak if peak else None, "seconds": seconds, **extra}


def distillation_step(forward, loss_fn, optimizer, cfg, ctx):
    """One training step on a batch from a collator: to the device (non-blocking), `forward(batch)` ->
    logits [texts, num_labels] under autocast, the graded loss, backward, optimizer. Returns the loss."""
    device, dtype = ctx["device"], ctx["autocast_dtype"]

    def step(batch):
        batch = to_device(batch, device)
        with autocast(device, dtype):
            logits = forward(batch)
        loss = loss_fn(logits, batch["teacher_logits"], batch["labels"], temperature=cfg.temperature,
                       alpha=cfg.alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss
    return step


def compiled_error(forward, batch, ctx) -> float | str:
    """||compiled - eager|| / ||eager|| of the logits [texts, num_labels] on one batch, same weights
    (torch.compiler's force_eager stance runs the compiled layers' Python code): a compilation that is
    fast but wrong shows here (expect bf16 rounding: the gpu attention tests accept 2e-2). A failure
    is returned as text."""
    device, dtype = ctx["device"], ctx["autocast_dtype"]
    batch = to_device(batch, device)
    try:
        with autocast(device, dtype):
            compiled = forward(batch).detach().float()
            with torch.compiler.set_stance("force_eager"):
                eager = forward(batch).detach().float()
        return ((compiled - eager).norm() / eager.norm()).item()
    except Exception as err:  # a diagnostic: the timed row stands without it
        return f"{type(err).__name__}: {err}"[:300]


def time_steps(name, step, loader, warm_batches, text_lengths, row, cfg, ctx) -> dict:
    """Run `warm_batches` untimed (compilation, CUDA-graph recording, allocator), then `cfg.warmup`
    steps of `loader`, then time `cfg.steps` more, counting tokens and FLOPs from `text_lengths(batch)`
    (real tokens per text, known on the host). Optionally profiles 3 more steps (`cfg.kernel_table`)."""
    timer = Timer(ctx["device"])
    with peak_memory(ctx["device"], row):
        tokens = flops = positions = 0.0
        for batch in warm_batches:
            step(batch)
        for i, batch in enumerate(loader):
            if i == cfg.warmup:
                start = timer.now()
            if i >= cfg.warmup:
                lengths = text_lengths(batch)
                tokens += sum(lengths)
                flops += sum(ctx["student_flops"](n) for n in lengths)
                positions += batch["input_ids"].numel()
            loss = step(batch)
        seconds = timer.now() - start
    if not math.isfinite(loss.item()):
        raise RuntimeError(f"{name}: loss is {loss.item()} (random weights should not do this)")
    if cfg.kernel_table:
        row.update(kernel_table(step, warm_batches[:3], cfg.kernel_table, ctx["device"].startswith("cuda")))
    return result_row(tokens, flops, seconds, ctx["peak"], **row, steps=cfg.steps, padding=1 - tokens / positions)


def timed_batches(examples, batches: list[list[int]], collate, cfg, cuda: bool):
    """What the timed loop iterates: a DataLoader collating on the main thread inside the loop (pinned
    on CUDA), or with `cfg.precollate` the same batches collated and pinned before it."""
    if not cfg.precollate:
        return torch.utils.data.DataLoader(examples, batch_sampler=batches, collate_fn=collate, pin_memory=cuda)
    made = [collate([examples[i] for i in b]) for b in batches]
    return [{k: v.pin_memory() if cuda and torch.is_tensor(v) else v for k, v in b.items()} for b in made]


def bench_reference(student, examples, loss_fn, cfg, ctx, compiled: bool = False, bf16_weights: bool = False) -> dict:
    """The reference distillation step: grouped batches, pinned, non-blocking, bf16, fused AdamW
    (on fp32 master copies of bf16 weights with `bf16_weights`)."""
    cuda = ctx["device"].startswith("cuda")
    model = compile_student(student, cfg.compile_scope, cfg.compile_mode) if compiled else student
    adamw = functools.partial(torch.optim.AdamW, lr=5e-5, fused=cuda)
    if bf16_weights:  # no autocast: it would run the norms, and so the residual stream, in fp32 on CUDA
        optimizer, ctx = MasterWeights(student, adamw), ctx | {"autocast_dtype": None}
    else:
        optimizer = adamw(student.parameters())
    lengths = [len(e["input_ids"]) for e in examples]
    batches = LengthGroupedBatchSampler(lengths, ctx["batch_size"]).batches()[: cfg.warmup + cfg.steps]
    collate = PadCollator(ctx["pad_token_id"], cfg.pad_to_multiple_of)
    loader = timed_batches(examples, batches, collate, cfg, cuda)

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
    row = {"attention": student.config._attn_implementation, "batch_size": ctx["batch_size"],
           "compiled": f"{cfg.compile_scope}/{cfg.compile_mode}" if compiled else None,
           "weights": "bf16 + fp32 master" if bf16_weights else "fp32", "precollated": cfg.precollate}
    model.train()
    result = time_steps("reference step", step, loader, list(shapes.values()) * repeats,
                        lambda batch: batch["attention_mask"].sum(1).tolist(), row, cfg, ctx)
    if compiled:
        result["logits_rel_error_vs_eager"] = compiled_error(forward, next(iter(shapes.values())), ctx)
    return result


def bench_packed(student, examples, loss_fn, cfg, ctx, compiled: bool = False) -> dict:
    """The distillation step on packed rows of `cfg.packed_tokens` tokens: one input shape, no padding
    and no masks (`kdcourse.packing`); otherwise as `bench_reference`."""
    from kdcourse.packing import PackedCollator, pack_by_length, packed_logits
    cuda = ctx["device"].startswith("cuda")
    if compiled:
        compile_student(student, "layers", cfg.compile_mode)
    optimizer = torch.optim.AdamW(student.parameters(), lr=5e-5, fused=cuda)
    # Just enough texts to fill the packs: first-fit decreasing then spreads long and short texts evenly.
    lengths = [len(e["input_ids"]) for e in examples]
    per_pack = min(cfg.packed_tokens, (cfg.pack_max_texts or cfg.packed_tokens) * sum(lengths) / len(lengths))
    budget = 0.98 * (cfg.warmup + cfg.steps) * per_pack
    count = next((i for i, total in enumerate(itertools.accumulate(lengths)) if total > budget), len(lengths))
    packs = pack_by_length(lengths[:count], cfg.packed_tokens, cfg.pack_max_texts or None)[: cfg.warmup + cfg.steps]
    if len(packs) < cfg.warmup + cfg.steps:
        raise ValueError(f"{len(examples)} examples make only {len(packs)} packs of {cfg.packed_tokens} tokens; "
                         f"lower --packed_tokens or --steps")
    collate = PackedCollator(ctx["pad_token_id"], cfg.packed_tokens, ctx["max_length"], cfg.pack_max_texts or None)
    loader = timed_batches(examples, packs, collate, cfg, cuda)
    forward = functools.partial(packed_logits, student)
    step = distillation_step(forward, loss_fn, optimizer, cfg, ctx)
    row = {"attention": student.config._attn_implementation, "batch_size": f"{cfg.packed_tokens} tok",
           "compiled": f"layers/{cfg.compile_mode}" if compiled else None,
           "texts_per_step": sum(len(p) for p in packs[cfg.warmup:]) / cfg.steps,
           "max_texts": collate.max_texts, "cu_seqlens": collate.max_sequences + 1, "precollated": cfg.precollate}
    student.train()
    # One shape for all packs: three untimed steps cover compilation and CUDA-graph recording.
    warm = [collate([examples[i] for i in p]) for p in packs[:3]]
    result = time_steps("packed step", step, loader, warm, lambda batch: batch["lengths"].tolist(), row, cfg, ctx)
    if compiled:
        result["logits_rel_error_vs_eager"] = compiled_error(forward, warm[0], ctx)
    return result


@torch.inference_mode()
def bench_soft_labels(teacher, examples, collect, cfg, ctx) -> dict:
    """The teacher over eval batches, longest first, through the graded collect_teacher_logits."""
    device, timer = ctx["device"], Timer(ctx["device"])
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    size = ctx["eval_batch_size"]
    collate = PadCollator(ctx["pad_token_id"], cfg.pad_to_multiple_of)
    batches = [collate([examples[i] for i in order[s:s + size]]) for s in range(0, len(order), size)]
    if device.startswith("cuda"):
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    row = {"attention": teacher.config._attn_implementation, "batch_size": size}
    with peak_memory(device, row), autocast(device, ctx["autocast_dtype"]):
        collect(teacher, batches[:1], device)  # warm-up: kernels, allocator
        start = timer.now()
        logits = collect(teacher, batches, device)
        seconds = timer.now() - start
    lengths = [len(e["input_ids"]) for e in examples]
    flops = sum(ctx["teacher_flops"](n) for n in lengths)
    return result_row(sum(lengths), flops, seconds, ctx["peak"], **row, examples=len(logits))


def bench_trainer(student, examples, loss_fn, cfg, ctx) -> dict:
    """A Trainer subclass with the same loss on the same examples: what users would write."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    class DistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            teacher_logits, labels = inputs.pop("teacher_logits"), inputs.pop("labels")
            outputs = model(**inputs)
            loss = loss_fn(outputs.logits, teacher_logits, labels, temperature=cfg.temperature,
                           alpha=cfg.alpha)
            return (loss, outputs) if return_outputs else loss

    timer, marks = Timer(ctx["device"]), {}

    class Clock(TrainerCallback):  # global_step counts finished steps
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == cfg.warmup:
                marks["start"] = timer.now()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == cfg.warmup + cfg.steps:
                marks["end"] = timer.now()

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=ctx["batch_size"], learning_rate=5e-5,
            max_steps=cfg.warmup + cfg.steps, bf16=ctx["autocast_dtype"] is torch.bfloat16,
            report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
            remove_unused_columns=False, use_cpu=not ctx["device"].startswith("cuda"))
        trainer = DistillationTrainer(model=student, args=args, train_dataset=examples,
                                      data_collator=PadCollator(ctx["pad_token_id"]), callbacks=[Clock()])
        row = {"attention": student.config._attn_implementation, "batch_size": ctx["batch_size"]}
        with peak_memory(ctx["device"], row):
            trainer.train()
    seconds = marks["end"] - marks["start"]
    # Random batches: expected tokens and FLOPs per step are the data set's means times the batch.
    mean_tokens = sum(len(e["input_ids"]) for e in examples) / len(examples)
    mean_flops = sum(ctx["student_flops"](len(e["input_ids"])) for e in examples) / len(examples)
    n = cfg.steps * ctx["batch_size"]
    return result_row(n * mean_tokens, n * mean_flops, seconds, ctx["peak"], **row, steps=cfg.steps,
                      optimizer=str(args.optim))


# ---------------------------------------------------------------- main
def run_bench(cfg: BenchConfig, save=lambda results: None) -> dict:
    """Every measurement of `cfg`; returns a dict of rows and ratios. `save(results)` runs after
    each measurement, so what was measured before a failure is kept. Inductor's settings hold for
    this call only (compilation happens lazily, at each row's first steps)."""
    import torch._inductor.config as inductor
    with inductor.patch(coordinate_descent_tuning=cfg.coordinate_descent_tuning):
        return _run_bench(cfg, save)


def _run_bench(cfg: BenchConfig, save) -> dict:
    from kdcourse.models import attention_implementation
    from kdcourse.notebook import load_graded_functions
    from kdcourse.paths import SOLUTION_NOTEBOOK
    from kdcourse.profiles import get_profile
    from kdcourse.utils import pick_device

    profile = get_profile(cfg.profile)
    device = pick_device(cfg.device)
    graded = load_graded_functions(SOLUTION_NOTEBOOK)
    card, peak = peak_flops(device)
    batch_size = cfg.batch_size or profile.train_batch_size
    max_length = cfg.max_length or profile.max_length
    ctx = {"device": device, "peak": peak, "batch_size": batch_size, "max_length": max_length,
           "eval_batch_size": cfg.eval_batch_size or profile.eval_batch_size,
           "autocast_dtype": torch.bfloat16 if device.startswith("cuda") else None}
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True  # the few fp32 matmuls left outside autocast
        torch.backends.cuda.enable_cudnn_sdp(cfg.cudnn_attention)
    student_config = bench_model_config(profile, "student", attention=cfg.attention)
    teacher_config = bench_model_config(profile, "teacher", attention=cfg.attention)
    ctx["pad_token_id"] = student_config.pad_token_id
    largest_batch = max([batch_size, *cfg.extra_batch_sizes])
    n_examples = max(cfg.train_texts, (cfg.warmup + cfg.steps) * largest_batch,
                     cfg.soft_label_batches * ctx["eval_batch_size"])
    examples = random_examples(n_examples, max_length, min(cfg.median_length, max_length),
                               student_config.vocab_size, student_config.num_labels)
    results = {"config": asdict(cfg), "profile": profile.name, "device": card,
               "peak_bf16_tflops": peak / 1e12 if peak else None, "torch": torch.__version__,
               "attention": student_config._attn_implementation, "batch_size": batch_size,
               "max_length": max_length, "mean_length": sum(len(e["input_ids"]) for e in examples) / len(examples),
               "inductor": {"coordinate_descent_tuning": cfg.coordinate_descent_tuning}}
    logger.info("bench: %s", json.dumps({k: v for k, v in results.items() if k != "config"}))

    # 1. the reference distillation step, at the profile's batch size (and any extra ones)
    student = build_model(student_config, device)
    n_student = non_embedding_params(student)
    ctx["student_flops"] = lambda n: flops_per_sequence(student_config, n_student, n)
    results["student_params"] = sum(p.numel() for p in student.parameters())
    if cfg.eager:
        results["reference"] = bench_reference(student, examples, graded.distillation_loss, cfg, ctx)
        save(results)
    def attempt(name, measure):  # optional rows: a failure (OOM, compile) is reported, the rest goes on
        try:
            results[name] = measure()
        except Exception as err:
            logger.exception("%s failed", name)
            results.setdefault("errors", {})[name] = f"{type(err).__name__}: {err}"[:2000]
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
        save(results)

    for attention in cfg.compare_attention:  # the same step with another attention
        attempt(f"reference_{attention}", lambda: bench_reference(
            build_model(bench_model_config(profile, "student", attention=attention), device), examples,
            graded.distillation_loss, cfg, ctx))
    for size in cfg.extra_batch_sizes:
        attempt(f"reference_batch{size}", lambda: bench_reference(
            build_model(student_config, device), examples, graded.distillation_loss, cfg, ctx | {"batch_size": size}))
    if cfg.packed_tokens:  # packed rows need varlen attention: flash_attn if installed, else kd_varlen
        packed_attention = "flash_attention_2" if attention_implementation() == "flash_attention_2" else "kd_varlen"
        packed_config = bench_model_config(profile, "student", attention=packed_attention)
        n_packed = 2 * (cfg.warmup + cfg.steps) * cfg.packed_tokens // min(cfg.median_length, max_length)
        packed_examples = random_examples(n_packed, max_length, min(cfg.median_length, max_length),
                                          student_config.vocab_size, student_config.num_labels, seed=2)
        attempt("reference_packed", lambda: bench_packed(build_model(packed_config, device), packed_examples,
                                                         graded.distillation_loss, cfg, ctx))
        if cfg.compile:
            attempt("reference_packed_compiled", lambda: bench_packed(
                build_model(packed_config, device), packed_examples, graded.distillation_loss, cfg, ctx,
                compiled=True))
    del student
    # 2. the Trainer baseline on the same examples and loss, from fresh weights
    if cfg.trainer:
        results["trainer"] = bench_trainer(build_model(student_config, device), examples,
                                           graded.distillation_loss, cfg, ctx)
        save(results)
    # 3. the soft-label pass of the teacher
    if cfg.soft_label_batches:
        teacher = build_model(teacher_config, device).eval()
        n_teacher = non_embedding_params(teacher)
        ctx["teacher_flops"] = lambda n: flops_per_sequence(teacher_config, n_teacher, n, training=False)
        results["teacher_params"] = sum(p.numel() for p in teacher.parameters())
        soft_examples = examples[: cfg.soft_label_batches * ctx["eval_batch_size"]]
        results["soft_labels"] = bench_soft_labels(teacher, soft_examples, graded.collect_teacher_logits, cfg, ctx)
        del teacher
        save(results)
    # 4. the reference step under torch.compile, last: compiling takes a while and may fail
    if cfg.compile:
        attempt("reference_compiled", lambda: bench_reference(
            build_model(student_config, device), examples, graded.distillation_loss, cfg, ctx, compiled=True))
    if cfg.bf16_weights:  # the same step with a bf16 residual stream
        attempt("reference_bf16_weights", lambda: bench_reference(
            build_model(student_config, device), examples, graded.distillation_loss, cfg, ctx, compiled=cfg.compile,
            bf16_weights=True))
    results["ratios"] = ratios(results)
    save(results)
    return results


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


# Compiled logits further than this from eager ones (relative norm) mark a row as suspect: bf16 kernels
# differ by less (the gpu attention tests accept 2e-2 between SDPA, FlashAttention and FlexAttention).
SUSPECT_ERROR = 2e-2


def suspect(error: float | str | None) -> bool:
    """Whether a compiled row's `logits_rel_error_vs_eager` (None: not compiled) says its logits are
    off its eager model's, or could not be checked: its speed is reported, but it counts in no ratio."""
    return error is not None and not (isinstance(error, float) and error <= SUSPECT_ERROR)


def format_error(error: float | str) -> str:
    if not isinstance(error, float):
        return f"failed ({error[:80]})"
    return f"{100 * error:.2f}%" + (" SUSPECT: not the eager model's result" if suspect(error) else "")


def format_table(results: dict) -> str:
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


def main(argv=None) -> dict:
    from transformers import HfArgumentParser

    from kdcourse.paths import RUNS_DIR, move_to_history
    (cfg,) = HfArgumentParser(BenchConfig).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(cfg.out or RUNS_DIR / cfg.profile / "bench.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    move_to_history(out.parent, [out.name])
    results = run_bench(cfg, save=lambda r: out.write_text(json.dumps(r, indent=1) + "\n"))
    print(format_table(results) + f"\nresults -> {out}")
    return results


if __name__ == "__main__":
    run_cli(main)
