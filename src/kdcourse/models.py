"""Tokenizers and models for a profile, by hub id, local path, or built here (random init).

    tokenizer = load_tokenizer(profile)
    student = load_student(profile, label_names, seed=0)       # random-init or pretrained body
    teacher = load_teacher(profile, label_names)               # the fine-tuned teacher checkpoint

The real profile loads `answerdotai/ModernBERT-large` / `-base` with `from_pretrained`; the offline
profiles build small `ModernBertConfig`s whose settings match the released checkpoints (mean pooling)
and a byte-level BPE tokenizer trained on the training split. Both are cached in `.cache/`.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from pathlib import Path

import torch
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, ModernBertConfig,
                          PreTrainedTokenizerFast)

from kdcourse.paths import CACHE_DIR, CHECKPOINT_DIR
from kdcourse.profiles import Profile
from kdcourse.utils import autocast

logger = logging.getLogger(__name__)
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def checkpoint_dir(profile: Profile, role: str = "teacher") -> Path:
    """Where `make teacher` saves the fine-tuned teacher of a profile."""
    return CHECKPOINT_DIR / profile.name / role


# ---------------------------------------------------------------- tokenizer
def tiny_tokenizer_dir(vocab_size: int) -> Path:
    return CACHE_DIR / "tokenizers" / f"cfpb-bpe-{vocab_size}"


def train_tiny_tokenizer(texts, vocab_size: int, out_dir: Path) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (ModernBERT's kind) on `texts` and save it to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   bos_token="[CLS]", eos_token="[SEP]")
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    fast.save_pretrained(tmp)
    if out_dir.exists():  # another process finished first: keep its copy
        shutil.rmtree(tmp)
    else:
        tmp.replace(out_dir)  # atomic, so a half-written cache is never loaded
    return fast


def load_tokenizer(profile: Profile, train_texts=None):
    """The profile's tokenizer; "tiny" trains one on the training split once and caches it."""
    if profile.tokenizer != "tiny":
        return AutoTokenizer.from_pretrained(profile.tokenizer)
    out_dir = tiny_tokenizer_dir(profile.vocab_size)
    if not (out_dir / "tokenizer.json").exists():
        if train_texts is None:
            from kdcourse.data import load_splits
            train_texts = load_splits()["train"]["text"]
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        logger.info("training a %d-token BPE tokenizer on %d texts -> %s",
                    profile.vocab_size, len(train_texts), out_dir)
        train_tiny_tokenizer(train_texts, profile.vocab_size, out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


# ---------------------------------------------------------------- models
ATTENTION_CHOICES = ("auto", "sdpa", "eager", "kd_varlen", "flex_attention", "flash_attention_2")


def check_attention(name: str) -> str:
    """`name` if it is one of ATTENTION_CHOICES, else a ValueError listing them."""
    if name not in ATTENTION_CHOICES:
        raise ValueError(f"unknown attention {name!r}: choose one of {', '.join(ATTENTION_CHOICES)}")
    return name


def resolve_attention(name: str = "auto") -> str:
    """The transformers attention implementation for `name` (one of ATTENTION_CHOICES): "auto" is
    `attention_implementation()`; "kd_varlen" is registered with transformers first."""
    if check_attention(name) == "auto":
        return attention_implementation()
    if name == "kd_varlen":
        from kdcourse.perf.attention import register
        register()
    return name


def attention_implementation() -> str:
    """FlashAttention-2 (with unpadding) when `flash_attn` is installed and a GPU is visible, PyTorch
    SDPA otherwise. `kdcourse.perf.attention`'s "kd_varlen" (PyTorch's own varlen FlashAttention) is an
    opt-in: on length-grouped batches it measured slower than SDPA (docs/benchmarks.md)."""
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def compile_layers(model, mode: str = "default"):
    """torch.compile each encoder layer of a ModernBERT classifier, in place; returns the model.
    The layers share their code and the weights are graph inputs, so one compilation serves all of
    them (seconds, not the minutes of a whole-model compile); a second input shape recompiles once
    with dynamic shapes. Its speed-up over the eager step, measured: docs/benchmarks.md."""
    import torch._dynamo
    # Local and global layers, and a dynamic-shape recompile of each: stay well under the limit.
    torch._dynamo.config.cache_size_limit = max(64, torch._dynamo.config.cache_size_limit)
    for layer in model.base_model.layers:
        layer.compile(mode=mode)
    return model


def label_config(label_names: list[str]) -> dict:
    return {"num_labels": len(label_names),
            "id2label": dict(enumerate(label_names)),
            "label2id": {name: i for i, name in enumerate(label_names)}}


# The released configs (huggingface.co/answerdotai/ModernBERT-{base,large}/config.json). A profile's
# `*_config` table names one with `released = "base"` (or "large") to build that exact shape.
MODERNBERT = {
    "base": dict(hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152),
    "large": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, intermediate_size=2624),
}
MODERNBERT_SHARED = dict(vocab_size=50368, global_attn_every_n_layers=3, local_attention=128,
                         max_position_embeddings=8192, classifier_pooling="mean", pad_token_id=50283,
                         bos_token_id=50281, eos_token_id=50282, cls_token_id=50281, sep_token_id=50282)


def expand_released(overrides: dict) -> dict:
    """A profile's `*_config` table as ModernBertConfig overrides: `released = "base"` or "large"
    becomes that checkpoint's shape, vocabulary (50,368), 128-token window and 8,192 positions (the
    token ids stay the tokenizer's); the table's other keys apply on top. Without `released`, as is."""
    overrides = dict(overrides)
    name = overrides.pop("released", None)
    if name is None:
        return overrides
    if name not in MODERNBERT:
        raise ValueError(f"released = {name!r} in a profile's *_config table: choose one of "
                         f"{', '.join(map(repr, MODERNBERT))}")
    shared = {k: v for k, v in MODERNBERT_SHARED.items() if not k.endswith("token_id")}
    return shared | MODERNBERT[name] | overrides


def tiny_config(overrides: dict, tokenizer, label_names: list[str],
                max_length: int) -> ModernBertConfig:
    """A ModernBertConfig set up like the released checkpoints, for `tokenizer`'s vocab; `overrides` is
    a profile's `*_config` table (small shapes, or `released = "base"` for the exact one)."""
    values = dict(
        vocab_size=len(tokenizer), max_position_embeddings=max(512, max_length),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id, cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
        classifier_pooling="mean",  # the released checkpoints pool by mean, not "cls"
        # Short inputs: let every layer see the whole text (the default window is 128 tokens).
        local_attention=max(128, 2 * max_length),
        **label_config(label_names),
    )
    values.update(expand_released(overrides))
    if values["vocab_size"] < len(tokenizer):
        raise ValueError(f"vocab_size {values['vocab_size']} is below the tokenizer's {len(tokenizer)} "
                         "tokens: raise the profile's vocab_size or the *_config table's")
    return ModernBertConfig(**values)


def build_tiny_model(overrides: dict, tokenizer, label_names, max_length: int, seed: int = 0,
                     attention: str = "sdpa"):
    """A random-init ModernBertForSequenceClassification; the same seed gives the same weights."""
    config = tiny_config(overrides, tokenizer, label_names, max_length)
    config._attn_implementation = resolve_attention(attention)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config)


def load_pretrained(name_or_path: str | Path, label_names: list[str], **kwargs):
    """`from_pretrained` with our label map; a hub id (needs internet) or a local folder."""
    if str(name_or_path).startswith((".", "/")) and not Path(name_or_path).exists():
        raise FileNotFoundError(f"model folder {name_or_path} does not exist")
    kwargs.setdefault("attn_implementation", attention_implementation())
    model = AutoModelForSequenceClassification.from_pretrained(
        name_or_path, **label_config(label_names), **kwargs)
    check_label_map(model, label_names, str(name_or_path))
    return model


def load_student(profile: Profile, label_names, tokenizer=None, seed: int = 0, attention: str = "auto"):
    """The student before training: pretrained body (gpu) or random init (tiny profiles).
    attention: one of ATTENTION_CHOICES; "auto" is SDPA for the tiny models, else `attention_implementation()`."""
    if profile.student_config:
        tokenizer = tokenizer or load_tokenizer(profile)
        return build_tiny_model(profile.student_config, tokenizer, label_names, profile.max_length, seed,
                                attention="sdpa" if attention == "auto" else attention)
    torch.manual_seed(seed)  # the classification head is freshly initialised
    return load_pretrained(profile.student, label_names, attn_implementation=resolve_attention(attention))


def load_teacher_init(profile: Profile, label_names, tokenizer=None, seed: int = 0):
    """The teacher before fine-tuning (what `make teacher` starts from)."""
    if profile.teacher_config:
        tokenizer = tokenizer or load_tokenizer(profile)
        return build_tiny_model(profile.teacher_config, tokenizer, label_names,
                                profile.max_length, seed)
    torch.manual_seed(seed)
    return load_pretrained(profile.teacher, label_names)


def load_teacher(profile: Profile, label_names, path: str | Path | None = None):
    """The fine-tuned teacher saved by `make teacher` (or at `path`), in eval mode."""
    path = Path(path or checkpoint_dir(profile, "teacher"))
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"no fine-tuned teacher at {path}: run `make teacher "
                                f"PROFILE={profile.name}` first (or pass its folder)")
    return load_pretrained(path, label_names).eval()


def check_label_map(model, label_names: list[str], what: str = "model"):
    """Raise if the model's id2label is not `label_names` in order."""
    found = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if found != list(label_names):
        raise ValueError(f"{what} has labels {found}, but the data has {list(label_names)}: "
                         "teacher, student and data must share one label map (same order)")


# ---------------------------------------------------------------- size and speed
def count_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.inference_mode()
def measure_latency(model, batch_size: int = 1, seq_len: int = 128, device: str = "cpu",
                    repeats: int = 10, warmup: int = 2, dtype: torch.dtype | None = None) -> dict:
    """Forward-pass latency (ms per batch) and throughput (sequences/s) on random token ids."""
    model = model.to(device).eval()
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab, (batch_size, seq_len), generator=generator).to(device)
    attention_mask = torch.ones_like(input_ids)
    amp = autocast(device, dtype)
    timings = []
    for i in range(warmup + repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with amp:
            model(input_ids=input_ids, attention_mask=attention_mask)
        if device != "cpu":
            torch.cuda.synchronize()
        if i >= warmup:
            timings.append(time.perf_counter() - start)
    latency = sorted(timings)[len(timings) // 2]  # the median resists a noisy neighbour
    return {"latency_ms": 1000 * latency, "sequences_per_s": batch_size / latency,
            "batch_size": batch_size, "seq_len": seq_len, "device": str(device)}
