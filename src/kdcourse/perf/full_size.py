"""`make full-size`: the reference pipeline at a profile's shapes, end to end, timed stage by stage.

    make full-size-data PROFILE=gpu-shapes   # any machine with the venv: tokenizer + token ids -> .cache/full_size/
    make full-size PROFILE=gpu-shapes        # one GPU: ModernBERT-large -> -base shapes (time: docs/benchmarks.md)
    python -m kdcourse.perf.full_size --profile smoke --out_dir /tmp/fs   # the same script on CPU

Stages, each recorded with wall time, tokens/s, peak GPU memory and whether every loss stayed finite
(`FullSizeRecord` -> full_size.json and full_size.md, rewritten after each stage):
1. teacher_memory: two training steps of a fresh teacher on one full batch (train_batch_size x
   max_length, every position a token, autocast as the profile says, fused AdamW): the worst case;
2. teacher: fine-tuning with the Hugging Face Trainer and `kdcourse.teacher.training_arguments`
   (what `make teacher` runs: group-by-length, bf16, fused AdamW, eval and checkpoint per epoch);
3. soft_labels: the graded `collect_teacher_logits` on every split, longest batch first;
4. student_hard, student_distilled: the graded `train_student` (alpha = 0, then T = 4, alpha = 0.9)
   with run_reference's optimizer, schedule and clipping, then validation and test logits.
Models are random-init (`*_config` tables; the hub is out of reach), so the record is about cost and
numerics, not quality. The GPU image has torch, transformers, pandas and pyarrow but no `datasets`:
stage 0 reads the tokenized splits that `--prepare_only true` wrote with `kdcourse.data` here.
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from kdcourse.data import SPLITS, LengthGroupedBatchSampler, PadCollator
from kdcourse.errors import run_cli
from kdcourse.perf.profiling import Timer, peak_memory
from kdcourse.profiles import Profile, get_profile
from kdcourse.utils import autocast, pick_device, set_seed

logger = logging.getLogger(__name__)


@dataclass
class FullSizeConfig:
    profile: str = field(default="gpu-shapes", metadata={"help": "profile in configs/profiles.toml "
                                                          "(gpu-shapes, smoke)"})
    seed: int = field(default=0, metadata={"help": "seed of the models, batch order and the memory probe's batch"})
    temperature: float = field(default=4.0, metadata={"help": "T of the distilled student (run_reference's headline)"})
    alpha: float = field(default=0.9, metadata={"help": "alpha of the distilled student"})
    max_grad_norm: float | None = field(default=1.0, metadata={"help": "students' gradient clipping, as run_reference"})
    data_dir: str | None = field(default=None, metadata={"help": "the prepared tokenizer and token ids (default "
                                 ".cache/full_size/<profile>)"})
    out_dir: str | None = field(default=None, metadata={"help": "where full_size.json and .md go (default "
                                "runs/<profile>/full_size)"})
    prepare_only: bool = field(default=False, metadata={"help": "write the data folder and stop (needs `datasets`: "
                               "run it here before a GPU call, and carry the folder)"})
    device: str | None = field(default=None, metadata={"help": "cpu or cuda (default: cuda if visible)"})


@dataclass
class StageRecord:
    """One stage: `seconds` is its whole wall time (models built, evaluation included); tokens/s counts
    the real (unpadded) tokens of its training or inference loop over that loop's seconds."""
    name: str
    seconds: float
    loop_seconds: float
    tokens: int
    peak_memory_gb: float | None  # torch.cuda.max_memory_allocated inside the stage; None on CPU
    losses: int = 0  # loss values checked (0: an inference stage, whose logits are checked instead)
    finite: bool = True
    first_loss: float | None = None
    last_loss: float | None = None
    notes: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.loop_seconds if self.loop_seconds else 0.0


@dataclass
class FullSizeRecord:
    profile: dict
    device: str
    versions: dict
    stages: list[StageRecord] = field(default_factory=list)
    failed: str | None = None  # the stage that raised, with its error; later stages did not run

    def to_json(self) -> dict:
        return asdict(self) | {"stages": [asdict(s) | {"tokens_per_s": s.tokens_per_s} for s in self.stages],
                               "all_finite": all(s.finite for s in self.stages),
                               "total_seconds": sum(s.seconds for s in self.stages)}

    def to_markdown(self) -> str:
        p = self.profile
        versions = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        lines = [f"Full-size run, profile `{p['name']}` on {self.device} ({versions}): "
                 f"max length {p['max_length']}, batch {p['train_batch_size']} (eval {p['eval_batch_size']}), "
                 f"{p['precision']}, teacher {p['teacher_epochs']} and students {p['student_epochs']} epoch(s), "
                 "random-init weights.", "",
                 "| stage | wall s | loop s | tokens | tokens/s | peak GB | losses | all finite "
                 "| first -> last loss | notes |",
                 "|---|---|---|---|---|---|---|---|---|---|"]
        for s in self.stages:
            mem = f"{s.peak_memory_gb:.1f}" if s.peak_memory_gb is not None else "n/a"
            loss = f"{s.first_loss:.3f} -> {s.last_loss:.3f}" if s.first_loss is not None else ""
            notes = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in s.notes.items())
            lines.append(f"| {s.name} | {s.seconds:.1f} | {s.loop_seconds:.1f} | {s.tokens:,} "
                         f"| {s.tokens_per_s:,.0f} | "
                         f"{mem} | {s.losses} | {'yes' if s.finite else '**NO**'} | {loss} | {notes} |")
        total = self.to_json()["total_seconds"]
        lines += ["", f"Total {total:.0f} s over the stages." + (f" **Failed**: {self.failed}." if self.failed else "")]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- data
def prepare_data(profile: Profile, folder: Path) -> Path:
    """Tokenizer (built on the whole training split, as `load_tokenizer` does) and the capped splits'
    token ids -> `folder`/tokenizer/ and `folder`/tokens.pt (flat int32 ids, lengths, labels per split)."""
    from kdcourse.data import load_label_names, load_splits, tokenize_splits
    from kdcourse.models import load_tokenizer
    from kdcourse.teacher import sample_caps
    splits = load_splits(max_samples=sample_caps(profile))
    tokenizer = load_tokenizer(profile)
    tokenized = tokenize_splits(splits, tokenizer, profile.max_length)
    data = {"key": data_key(profile), "label_names": load_label_names(), "splits": {}}
    for split in SPLITS:
        ids = tokenized[split]["input_ids"]
        data["splits"][split] = {"input_ids": torch.tensor([t for row in ids for t in row], dtype=torch.int32),
                                 "lengths": torch.tensor([len(row) for row in ids]),
                                 "labels": torch.tensor(tokenized[split]["label"])}
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder / "tokenizer")
    torch.save(data, folder / "tokens.pt")
    logger.info("prepared %s -> %s", {s: len(tokenized[s]) for s in SPLITS}, folder)
    return folder


def data_key(profile: Profile) -> dict:
    """What the prepared token ids depend on: a folder written for other values is refused."""
    return {k: getattr(profile, k) for k in ("tokenizer", "vocab_size", "max_length", "max_train_samples",
                                              "max_eval_samples")}


def load_data(profile: Profile, folder: Path) -> tuple:
    """(tokenizer, label_names, {split: list of {"input_ids", "label"}}) from a prepared folder."""
    from transformers import AutoTokenizer
    if not (folder / "tokens.pt").exists():
        raise FileNotFoundError(f"no prepared data in {folder}: run `make full-size-data PROFILE={profile.name}` "
                                "(needs the venv's `datasets`) and, for a GPU call, carry that folder")
    data = torch.load(folder / "tokens.pt", weights_only=True)
    if data["key"] != data_key(profile):
        raise ValueError(f"{folder} was prepared for {data['key']}, but profile {profile.name!r} has "
                         f"{data_key(profile)}: rerun `make full-size-data PROFILE={profile.name}`")
    examples = {}
    for split, d in data["splits"].items():
        rows = torch.split(d["input_ids"].long(), d["lengths"].tolist())
        examples[split] = [{"input_ids": row.tolist(), "label": int(label)} for row, label in zip(rows, d["labels"])]
    return AutoTokenizer.from_pretrained(folder / "tokenizer"), data["label_names"], examples


# ---------------------------------------------------------------- stages
@contextlib.contextmanager
def stage(record: FullSizeRecord, name: str, device: str, save):
    """Times the block and appends its StageRecord (the block fills `values`); saves the record after."""
    gc.collect()  # the previous stage's models and optimizer state go before this one's peak is read
    values, start = {"loop_seconds": 0.0, "tokens": 0}, Timer(device).now()
    logger.info("stage %s", name)
    with peak_memory(device, values):
        yield values
    record.stages.append(StageRecord(name=name, seconds=Timer(device).now() - start, **values))
    logger.info("stage %s: %s", name, json.dumps(asdict(record.stages[-1])))
    save(record)


def loss_summary(losses: list[float]) -> dict:
    bad = [i for i, loss in enumerate(losses) if not math.isfinite(loss)]
    summary = {"losses": len(losses), "finite": not bad,
               "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None}
    if bad:
        summary["notes"] = {"first_non_finite_step": bad[0] + 1}
    return summary


def build(make_model, device: str):
    """A model built straight on `device` (no slow CPU init of the 395M-parameter teacher first)."""
    with torch.device(device):
        return make_model().to(device)


def teacher_memory(profile, label_names, tokenizer, ctx, values):
    """Two training steps of a fresh teacher on one [train_batch_size, max_length] batch of tokens."""
    from kdcourse.models import load_teacher_init
    device, dtype = ctx["device"], ctx["autocast_dtype"]
    model = build(lambda: load_teacher_init(profile, label_names, tokenizer, seed=ctx["seed"]), device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=profile.teacher_lr, fused=device.startswith("cuda"))
    shape = (profile.train_batch_size, profile.max_length)
    g = torch.Generator().manual_seed(ctx["seed"])
    batch = {"input_ids": torch.randint(5, len(tokenizer), shape, generator=g).to(device),
             "attention_mask": torch.ones(shape, dtype=torch.long, device=device),
             "labels": torch.randint(0, len(label_names), shape[:1], generator=g).to(device)}
    timer, losses = Timer(device), []
    for _ in range(2):  # the first step allocates AdamW's state; the second is timed
        start = timer.now()
        with autocast(device, dtype):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    values |= loss_summary(losses) | {"loop_seconds": timer.now() - start, "tokens": shape[0] * shape[1]}
    values["notes"] = values.get("notes", {}) | {"batch": f"{shape[0]}x{shape[1]}",
                                                 "step_ms": 1000 * values["loop_seconds"]}


def finetune_teacher(profile, label_names, tokenizer, examples, ctx, values, work: Path):
    """The teacher as `make teacher` trains it (its TrainingArguments), every step's loss recorded."""
    from transformers import Trainer

    from kdcourse.metrics import evaluate_logits
    from kdcourse.models import load_teacher_init
    from kdcourse.teacher import training_arguments

    class RecordingTrainer(Trainer):
        def training_step(self, *args, **kwargs):
            loss = super().training_step(*args, **kwargs)
            self.step_losses.append(loss.detach())  # no sync per step
            return loss

    def metrics(prediction):
        found = evaluate_logits(prediction.predictions, prediction.label_ids)
        return {k: found[k] for k in ("accuracy", "macro_f1")}

    model = build(lambda: load_teacher_init(profile, label_names, tokenizer, seed=ctx["seed"]), ctx["device"])
    trainer = RecordingTrainer(model=model, args=training_arguments(profile, str(work), ctx["seed"]),
                               train_dataset=examples["train"], eval_dataset=examples["validation"],
                               data_collator=PadCollator(tokenizer.pad_token_id), compute_metrics=metrics)
    trainer.step_losses = []
    timer = Timer(ctx["device"])
    start = timer.now()
    trainer.train()
    values["loop_seconds"] = timer.now() - start
    values["tokens"] = profile.teacher_epochs * sum(len(e["input_ids"]) for e in examples["train"])
    values |= loss_summary(torch.stack(trainer.step_losses).float().tolist())
    best = trainer.state.best_metric
    values["notes"] = values.get("notes", {}) | {"steps": trainer.state.global_step,
                                                 "val_macro_f1": best if best is not None else float("nan")}
    return trainer.model.eval()


def predict(collect, model, examples, pad_token_id, batch_size, ctx) -> torch.Tensor:
    """Logits [N, num_labels] in `examples` order through the graded collect function; batches run
    longest first (an out-of-memory shows at once) and are put back in order (kdcourse.soft_labels.predict)."""
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    loader = torch.utils.data.DataLoader([examples[i] for i in order], batch_size=batch_size,
                                         collate_fn=PadCollator(pad_token_id),
                                         pin_memory=ctx["device"].startswith("cuda"))
    with autocast(ctx["device"], ctx["autocast_dtype"]):
        sorted_logits = collect(model, loader, ctx["device"])
    logits = torch.empty_like(sorted_logits)
    logits[torch.tensor(order)] = sorted_logits
    return logits


def train_student(graded, profile, label_names, tokenizer, train, ctx, values, *, temperature, alpha):
    """A fresh student trained with the graded train_student, as solutions/reference/students.py's train_one does."""
    import transformers

    from kdcourse.models import load_student
    device, seed = ctx["device"], ctx["seed"]
    set_seed(seed)  # before the model: both students start from the same weights
    student = build(lambda: load_student(profile, label_names, tokenizer, seed=seed), device)
    sampler = LengthGroupedBatchSampler([len(e["input_ids"]) for e in train], profile.train_batch_size, seed=seed)
    loader = torch.utils.data.DataLoader(train, batch_sampler=sampler, collate_fn=PadCollator(tokenizer.pad_token_id),
                                         pin_memory=device.startswith("cuda"))
    optimizer = torch.optim.AdamW(student.parameters(), lr=profile.student_lr, weight_decay=profile.weight_decay,
                                  fused=device.startswith("cuda"))
    steps = profile.student_epochs * len(loader)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(profile.warmup_ratio * steps), steps)
    timer = Timer(device)
    start = timer.now()
    losses = graded.train_student(student, loader, optimizer, temperature=temperature, alpha=alpha,
                                  epochs=profile.student_epochs, scheduler=scheduler, device=device,
                                  autocast_dtype=ctx["autocast_dtype"], max_grad_norm=ctx["max_grad_norm"])
    values["loop_seconds"] = timer.now() - start
    values["tokens"] = profile.student_epochs * sum(len(e["input_ids"]) for e in train)
    values |= loss_summary(losses)
    return student


def evaluate(graded, model, profile, tokenizer, examples, teacher_logits, label_names, ctx) -> dict:
    """Test accuracy and macro-F1, and agreement with the teacher, of a trained model."""
    from kdcourse.metrics import evaluate_logits
    logits = predict(graded.collect_teacher_logits, model, examples["test"], tokenizer.pad_token_id,
                     profile.eval_batch_size, ctx)
    found = evaluate_logits(logits, torch.tensor([e["label"] for e in examples["test"]]), teacher_logits["test"],
                            label_names=label_names)
    return {"test_accuracy": found["accuracy"], "test_macro_f1": found["macro_f1"], "agreement": found["agreement"],
            "logits_finite": bool(torch.isfinite(logits).all())}


# ---------------------------------------------------------------- main
def run(cfg: FullSizeConfig, save=lambda record: None) -> FullSizeRecord:
    """Every stage in order; a stage that raises ends the run with `record.failed` set (and saved)."""
    import transformers

    from kdcourse.notebook import load_graded_functions
    from kdcourse.paths import CACHE_DIR, SOLUTION_NOTEBOOK
    profile = get_profile(cfg.profile)
    folder = Path(cfg.data_dir or CACHE_DIR / "full_size" / profile.name)
    if cfg.prepare_only or not (folder / "tokens.pt").exists() and _has_datasets():
        prepare_data(profile, folder)
    device = pick_device(cfg.device)
    tokenizer, label_names, examples = load_data(profile, folder)
    ctx = {"device": device, "seed": cfg.seed, "max_grad_norm": cfg.max_grad_norm,
           "autocast_dtype": torch.bfloat16 if profile.precision == "bf16" and device.startswith("cuda") else None}
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    record = FullSizeRecord(profile=profile.to_dict(), device=card,
                            versions={"torch": torch.__version__, "transformers": transformers.__version__})
    if cfg.prepare_only:
        return record
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cuda.enable_cudnn_sdp(False)  # as run_reference: cuDNN re-plans per padded length
    graded = load_graded_functions(SOLUTION_NOTEBOOK)
    name = "setup"
    try:
        name = "teacher_memory"
        with stage(record, name, device, save) as values:
            teacher_memory(profile, label_names, tokenizer, ctx, values)
        name = "teacher"
        with tempfile.TemporaryDirectory() as work, stage(record, name, device, save) as values:
            teacher = finetune_teacher(profile, label_names, tokenizer, examples, ctx, values, Path(work))
        name = "soft_labels"
        with stage(record, name, device, save) as values:
            timer = Timer(device)
            start = timer.now()
            teacher_logits = {s: predict(graded.collect_teacher_logits, teacher, examples[s], tokenizer.pad_token_id,
                                         profile.eval_batch_size, ctx) for s in SPLITS}
            values |= {"loop_seconds": timer.now() - start,
                       "tokens": sum(len(e["input_ids"]) for s in SPLITS for e in examples[s]),
                       "finite": all(bool(torch.isfinite(t).all()) for t in teacher_logits.values())}
            values["notes"] = evaluate(graded, teacher, profile, tokenizer, examples, teacher_logits, label_names, ctx)
        del teacher
        train = [e | {"teacher_logits": t.tolist()} for e, t in zip(examples["train"], teacher_logits["train"])]
        for name, temperature, alpha in (("student_hard", 1.0, 0.0), ("student_distilled", cfg.temperature, cfg.alpha)):
            with stage(record, name, device, save) as values:
                student = train_student(graded, profile, label_names, tokenizer, train, ctx, values,
                                        temperature=temperature, alpha=alpha)
                values["notes"] = values.get("notes", {}) | evaluate(graded, student, profile, tokenizer, examples,
                                                                     teacher_logits, label_names, ctx)
            del student
    except Exception as err:
        logger.exception("stage %s failed", name)
        record.failed = f"{name}: {type(err).__name__}: {err}"[:1000]
        save(record)
    return record


def _has_datasets() -> bool:
    import importlib.util
    return importlib.util.find_spec("datasets") is not None


def main(argv=None) -> FullSizeRecord:
    from kdcourse.cli import parse_config
    from kdcourse.paths import RUNS_DIR, move_to_history
    (cfg,) = parse_config(FullSizeConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(cfg.out_dir or RUNS_DIR / cfg.profile / "full_size")

    def save(record):
        (out / "full_size.json").write_text(json.dumps(record.to_json(), indent=1) + "\n")
        (out / "full_size.md").write_text(record.to_markdown())

    if not cfg.prepare_only:
        out.mkdir(parents=True, exist_ok=True)
        move_to_history(out, ["full_size.json", "full_size.md"])
    logger.info("full size: %s", json.dumps(asdict(cfg)))
    record = run(cfg, save)
    if cfg.prepare_only:
        print(f"prepared {cfg.data_dir or 'the data folder'} for profile {cfg.profile}")
        return record
    print(record.to_markdown() + f"results -> {out}")
    bad = [s.name for s in record.stages if not s.finite]
    if record.failed or bad:
        sys.exit(f"full size: {record.failed or ''} {'non-finite losses in ' + ', '.join(bad) if bad else ''}".strip())
    return record


if __name__ == "__main__":
    run_cli(main)
