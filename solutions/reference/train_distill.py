"""Distil one student with checkpoints, resumption and several processes (kdcourse.distributed).

    python solutions/reference/train_distill.py --profile smoke                       # one process
    torchrun --nproc_per_node 2 solutions/reference/train_distill.py --profile smoke   # 2 CPU processes (gloo)
    torchrun --nproc_per_node 8 solutions/reference/train_distill.py --profile gpu     # 8 GPUs (NCCL)
    accelerate launch --num_processes 8 solutions/reference/train_distill.py --profile gpu

Interrupted? Run the same command again: it resumes from <out_dir>/checkpoint.pt to the same result.
The loss is the notebook's `distillation_loss`; rank 0 computes the soft labels once (the same
fingerprinted cache as run_reference.py, kdcourse.soft_labels) and every rank reads them. Each rank
trains on its share of the length-grouped batches, so the effective batch is world_size x
train_batch_size.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import transformers

from kdcourse.cli import parse_config
from kdcourse.data import (SPLITS, LengthGroupedBatchSampler, PadCollator, load_label_names, load_splits,
                           tokenize_splits)
from kdcourse.distributed import DistInfo, barrier, fit_distillation, init_distributed, shard, unwrap, write_json
from kdcourse.errors import UsageError, run_cli
from kdcourse.logits_cache import load_logits, model_fingerprint, tokenizer_fingerprint
from kdcourse.metrics import evaluate_logits
from kdcourse.models import load_student, load_tokenizer
from kdcourse.notebook import load_graded_functions
from kdcourse.paths import RUNS_DIR, SOLUTION_NOTEBOOK
from kdcourse.perf.master_weights import MasterWeights
from kdcourse.profiles import get_profile
from kdcourse.soft_labels import predict, soft_label_cache, teacher_soft_labels
from kdcourse.teacher import get_teacher, sample_caps
from kdcourse.utils import set_seed

logger = logging.getLogger("train_distill")


@dataclass
class DistillConfig:
    """train_distill.py's options (`--name value`)."""
    profile: str = field(default="cpu", metadata={"help": "profile in configs/profiles.toml"})
    temperature: float = field(default=4.0, metadata={"help": "softmax temperature of the soft term"})
    alpha: float = field(default=0.9, metadata={"help": "weight of the soft term (0: hard labels only)"})
    seed: int = field(default=0, metadata={"help": "initial weights and batch order"})
    epochs: int | None = field(default=None, metadata={"help": "default: the profile's student_epochs"})
    checkpoint_every: int = field(default=50, metadata={"help": "save a checkpoint every N steps (0: never)"})
    stop_after: int | None = field(default=None, metadata={"help": "stop after N steps, as if interrupted (tests)"})
    recompute_stale_cache: bool = field(default=False, metadata={
        "help": "move a soft-label cache whose stored fingerprint is not its name's aside (kept as "
                "*.stale-<fingerprint>) and recompute"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "gradient clipping; None: off"})
    out_dir: str | None = field(default=None, metadata={"help": "default: runs/<profile>/distill"})
    device: str | None = field(default=None, metadata={"help": "default: this rank's GPU, else cpu"})
    bf16_weights: bool = field(default=False, metadata={"help": "bf16 weights with fp32 master copies "
                               "(kdcourse.perf.master_weights.MasterWeights), no autocast: fewer bytes a step "
                               "(make traffic); evaluated and saved with the fp32 master weights"})

    def __post_init__(self):
        if self.temperature <= 0:
            raise UsageError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise UsageError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.epochs is not None and self.epochs < 1:
            raise UsageError(f"epochs must be >= 1 (leave it out for the profile's), got {self.epochs}")
        if self.checkpoint_every < 0 or (self.stop_after is not None and self.stop_after < 1):
            raise UsageError(f"checkpoint_every must be >= 0 (0: never) and stop_after >= 1, got "
                             f"{self.checkpoint_every} and {self.stop_after}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise UsageError(f"max_grad_norm must be > 0 (None: no clipping), got {self.max_grad_norm}")


def soft_labels(profile, tokenized, tokenizer, graded, info: DistInfo, autocast_dtype,
                recompute_stale: bool = False) -> dict:
    """Every split's teacher logits [N, C]: rank 0 makes them (kdcourse.soft_labels, the reference
    run's pass and cache), then every other rank reads the same files."""
    label_names = load_label_names()
    if info.is_main:
        teacher = get_teacher(profile, label_names).to(info.device)
        logits, _ = teacher_soft_labels(graded.collect_teacher_logits, teacher, tokenized, tokenizer,
                                        profile, info.device, autocast_dtype, recompute_stale)
    barrier(info)  # the teacher checkpoint and the caches exist now
    if info.is_main:
        return logits
    teacher_fp = model_fingerprint(get_teacher(profile, label_names))
    tokenizer_fp = tokenizer_fingerprint(tokenizer)
    return {split: load_logits(*soft_label_cache(split, profile, tokenized[split], tokenizer_fp, teacher_fp))
            for split in SPLITS}


def main(argv=None) -> dict:
    (cfg,) = parse_config(DistillConfig, argv)
    info = init_distributed(cfg.device)
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING, force=True,
                        format=f"%(asctime)s rank {info.rank}: %(message)s")
    transformers.logging.set_verbosity_error()
    profile = get_profile(cfg.profile)
    epochs = cfg.epochs or profile.student_epochs
    out = Path(cfg.out_dir or RUNS_DIR / profile.name / "distill")
    cuda = info.device.startswith("cuda")
    autocast_dtype = torch.bfloat16 if profile.precision == "bf16" and cuda else None
    resolved = {"config": asdict(cfg), "profile": profile.to_dict(), "world_size": info.world_size,
                "device": info.device, "epochs": epochs}
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", resolved)
        logger.info("resolved config: %s", json.dumps(resolved))
    graded = load_graded_functions(SOLUTION_NOTEBOOK)

    # data and soft labels (cached once, read by every rank)
    splits = load_splits(max_samples=sample_caps(profile))
    tokenizer = load_tokenizer(profile)
    tokenized = tokenize_splits(splits, tokenizer, profile.max_length)
    teacher_logits = soft_labels(profile, tokenized, tokenizer, graded, info, autocast_dtype,
                                 cfg.recompute_stale_cache)
    train = tokenized["train"]
    items = [{"input_ids": ids, "label": label, "teacher_logits": logits}
             for ids, label, logits in zip(train["input_ids"], train["label"],
                                           teacher_logits["train"].tolist())]
    collate = PadCollator(tokenizer.pad_token_id, pad_to_multiple_of=8 if cuda else None)  # tensor-core shapes
    sampler = LengthGroupedBatchSampler(train["length"], profile.train_batch_size, seed=cfg.seed)

    def epoch_batches(epoch):  # the same list on every rank; `shard` picks this rank's batches
        sampler.set_epoch(epoch)
        return sampler.batches()

    # student, optimizer, schedule over this rank's steps; DDP when several processes
    set_seed(cfg.seed)
    student = load_student(profile, load_label_names(), tokenizer, seed=cfg.seed).to(info.device)

    def adamw(params):
        return torch.optim.AdamW(params, lr=profile.student_lr, weight_decay=profile.weight_decay,
                                 fused=cuda)
    # bf16 weights before DDP wraps the model: its gradient buckets take the parameters' dtype
    masters = MasterWeights(student, adamw) if cfg.bf16_weights else None
    model = student
    if info.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            student, device_ids=[info.local_rank] if cuda else None)
    optimizer = masters or adamw(student.parameters())
    steps = epochs * len(shard(epoch_batches(0), info))
    scheduler = transformers.get_linear_schedule_with_warmup(
        masters.optimizer if masters else optimizer, int(profile.warmup_ratio * steps), steps)

    # train (resumes from the checkpoint if one is there)
    result = fit_distillation(
        model, epoch_batches, optimizer, graded.distillation_loss, temperature=cfg.temperature,
        alpha=cfg.alpha, epochs=epochs, scheduler=scheduler, info=info,
        collate=lambda indices: collate([items[i] for i in indices]),
        autocast_dtype=None if masters else autocast_dtype,  # bf16 weights: autocast would keep fp32 norms
        max_grad_norm=cfg.max_grad_norm, checkpoint_path=out / "checkpoint.pt",
        checkpoint_every=cfg.checkpoint_every, stop_after=cfg.stop_after,
        max_length=profile.max_length, log_every=max(1, steps // 10))
    if masters:
        masters.to_fp32()
    with torch.no_grad():  # identical on every rank under DDP
        checksum = float(sum(p.double().sum() for p in unwrap(model).parameters()))
    write_json(out / f"rank{info.rank}.json", {"checksum": checksum, "steps": result.steps,
                                               "tokens": result.tokens})
    if cfg.stop_after is not None and result.steps >= cfg.stop_after:
        logger.info("stopped after %d steps as asked; run again to resume", result.steps)
        return {"stopped_at": result.steps}

    # evaluate and save (rank 0)
    metrics = {"world_size": info.world_size, "steps": result.steps, "resumed_from": result.resumed_from,
               "train_seconds": result.train_seconds, "losses": result.losses, "checksum": checksum}
    if info.is_main:
        for split in ("validation", "test"):
            logits = predict(graded.collect_teacher_logits, student, tokenized[split], tokenizer,
                             profile.eval_batch_size, info.device, autocast_dtype)
            m = evaluate_logits(logits, splits[split]["label"], teacher_logits[split])
            metrics[split] = {k: m[k] for k in ("accuracy", "macro_f1", "agreement", "kl_to_teacher", "ece")}
        student.save_pretrained(out / "student")
        write_json(out / "metrics.json", metrics)
        logger.info("step %d: loss %.4f, val acc %.3f, agree %.3f -> %s", result.steps,
                    result.losses[-1], metrics["validation"]["accuracy"],
                    metrics["validation"]["agreement"], out)
    barrier(info)
    if info.world_size > 1:
        torch.distributed.destroy_process_group()
    return metrics


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run_cli(main)
