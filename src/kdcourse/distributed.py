"""A resumable, multi-process distillation loop around the notebook's `distillation_loss`.

    torchrun --nproc_per_node 2 solutions/reference/train_distill.py --profile smoke   # 2 processes
    accelerate launch --num_processes 8 solutions/reference/train_distill.py --profile gpu

`fit_distillation` is the reliable twin of the notebook's `train_student`: the same loss and step,
plus what a long run needs. DDP when launched with several processes (each rank trains on its own
share of the batches; gradients are averaged); a checkpoint every `checkpoint_every` steps (written
atomically, so an interruption never leaves half a file) and resumption from it to the same result;
a NaN or inf loss stops the run with a message naming the step; out-of-memory names the batch size
and length to lower. Every rank reads the same cached teacher logits (they ride in the batches).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

from kdcourse.errors import KDError
from kdcourse.utils import autocast, to_device

logger = logging.getLogger(__name__)


class NonFiniteLossError(KDError, RuntimeError):
    """The training loss became NaN or infinite."""


# ---------------------------------------------------------------- processes
@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group that torchrun / accelerate launch set up (RANK, WORLD_SIZE); one
    process otherwise. NCCL on GPUs (one per local rank), gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    rank, local_rank = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if device is None:
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank, world_size, local_rank, device)


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


def shard(batches: list, info: DistInfo) -> list:
    """This rank's share of an epoch's batches: every world_size-th one, the same count on every
    rank (the tail that does not divide is dropped, or the ranks would wait for each other)."""
    usable = len(batches) - len(batches) % info.world_size
    if usable == 0:
        raise ValueError(f"{len(batches)} batches cannot feed {info.world_size} processes: use a "
                         "smaller batch size, fewer processes or more data")
    return batches[info.rank:usable:info.world_size]


# ---------------------------------------------------------------- failures
@contextlib.contextmanager
def oom_hint(batch_size: int, max_length: int, what: str = "training"):
    """Turn a CUDA out-of-memory error into one that says which settings to lower."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as err:
        raise torch.cuda.OutOfMemoryError(
            f"out of GPU memory during {what} with batch size {batch_size} and max length "
            f"{max_length}: halve the batch size (--train_batch_size {max(1, batch_size // 2)}), "
            f"lower max_length, or set precision = 'bf16' in the profile. ({err})") from err


def check_finite(loss: float, step: int, epoch: int, checkpoint: Path | None = None) -> None:
    """Stop at the first NaN/inf loss, naming the step (and where the last good state is)."""
    if not math.isfinite(loss):
        saved = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
        raise NonFiniteLossError(
            f"loss is {loss} at step {step} (epoch {epoch}): lower the learning rate, clip "
            f"gradients (max_grad_norm) or check the teacher logits for NaN{saved}")


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, state: dict) -> Path:
    """torch.save to a temporary name, then an atomic rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_checkpoint(path: Path) -> dict | None:
    path = Path(path)
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


# ---------------------------------------------------------------- the loop
@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)  # this rank's loss at every step
    steps: int = 0
    train_seconds: float = 0.0
    tokens: int = 0  # real (unpadded) tokens this rank trained on, after any resume
    resumed_from: int | None = None


def fit_distillation(model, epoch_batches: Callable[[int], list], optimizer, loss_fn: Callable, *,
                     temperature: float, alpha: float, epochs: int, scheduler=None,
                     collate: Callable | None = None,
                     info: DistInfo = DistInfo(), autocast_dtype=None, max_grad_norm=None,
                     checkpoint_path: Path | None = None, checkpoint_every: int = 0,
                     stop_after: int | None = None, max_length: int = 0,
                     log_every: int = 0) -> FitResult:
    """Train `model` with `loss_fn` (the notebook's distillation_loss); return the losses.

    epoch_batches(epoch) -> the epoch's list of batches (the same on every rank, so the order is
    reproducible after a resume); this rank trains on `shard` of it, each item passed through
    `collate` if given (e.g. index lists -> padded tensors). `model` may be wrapped in DDP.
    With `checkpoint_path` and `checkpoint_every`, the state is saved every so many steps and at the
    end, and a run started again with the same arguments resumes from it. `stop_after` simulates an
    interruption after that many steps (for tests).
    """
    device = info.device
    result = FitResult()
    state = load_checkpoint(checkpoint_path) if checkpoint_path else None
    step = 0
    if state is not None:  # resume: weights, optimizer, schedule, RNG and losses so far
        unwrap(model).load_state_dict(state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as err:
            raise RuntimeError(f"{checkpoint_path} was saved by a run with other settings (bf16 "
                               "weights or not, another model): run again with the same arguments, "
                               f"or move the checkpoint away to start over ({err})") from None
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        step, result.losses, result.resumed_from = state["step"], state["losses"], state["step"]
        logger.info("rank %d resumed from %s at step %d", info.rank, checkpoint_path, step)
    model.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        batches = shard(epoch_batches(epoch), info)
        for i, batch in enumerate(batches):
            if epoch * len(batches) + i < step:
                continue  # done before the interruption
            batch = collate(batch) if collate else batch
            # forward, in bf16 where asked; the teacher logits come with the batch
            batch = to_device(batch, device)
            with oom_hint(len(batch["labels"]), max_length or batch["input_ids"].shape[1]):
                with autocast(device, autocast_dtype):
                    logits = model(input_ids=batch["input_ids"],
                                   attention_mask=batch["attention_mask"]).logits
                loss = loss_fn(logits, batch["teacher_logits"], batch["labels"],
                               temperature=temperature, alpha=alpha)
                # backward, clip, step (DDP averages the gradients of all ranks here)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            # NaN check (a sync point, the price of stopping at the right step), log, checkpoint
            step += 1
            value = loss.item()
            check_finite(value, step, epoch, checkpoint_path if state or checkpoint_every else None)
            result.losses.append(value)
            result.tokens += int(batch["attention_mask"].sum())
            if log_every and step % log_every == 0 and info.is_main:
                logger.info("step %d: loss %.4f", step, sum(result.losses[-log_every:]) / log_every)
            if checkpoint_path and checkpoint_every and step % checkpoint_every == 0:
                _save(checkpoint_path, model, optimizer, scheduler, step, result, info)
            if stop_after is not None and step >= stop_after:
                result.steps, result.train_seconds = step, time.perf_counter() - start
                return result
    if checkpoint_path and checkpoint_every:
        _save(checkpoint_path, model, optimizer, scheduler, step, result, info)
    result.steps, result.train_seconds = step, time.perf_counter() - start
    return result


def unwrap(model):
    return model.module if hasattr(model, "module") else model


def _save(path, model, optimizer, scheduler, step, result, info: DistInfo):
    """Rank 0 writes (the ranks' weights are identical under DDP); the others wait for it."""
    if info.is_main:
        save_checkpoint(path, {"model": unwrap(model).state_dict(),
                               "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict() if scheduler else None,
                               "rng": torch.get_rng_state(), "step": step,
                               "losses": list(result.losses)})
    barrier(info)


def write_json(path: Path, value) -> Path:
    """JSON written atomically: a crash leaves the previous file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=1, default=str) + "\n")
    tmp.replace(path)
    return path
