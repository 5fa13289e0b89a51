"""The reference solution: the pipeline end to end on the smoke profile, the soft-label cache's
refusals, resumption to the same result, DDP with 2 CPU processes, and the failure messages."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE = REPO_ROOT / "solutions" / "reference"

from kdcourse.distributed import NonFiniteLossError, fit_distillation, oom_hint
from kdcourse.logits_cache import StaleCacheError, cached_logits
from kdcourse.soft_labels import soft_label_cache

import run_reference           # solutions/reference, on pytest's pythonpath (pyproject.toml)
import train_distill

ROW_KEYS = {"accuracy", "macro_f1", "agreement", "kl_to_teacher", "ece", "params", "latency_ms",
            "train_seconds", "tokens_per_s"}


@pytest.mark.slow
@pytest.mark.xdist_group("reference")
def test_reference_pipeline_on_smoke(tmp_path):
    """make reference on the smoke profile writes metrics.json, report.md and the plots; an
    earlier run in the same folder moves to history/, other commands' files stay."""
    earlier = {"metrics.json": '{"earlier": true}', "report.md": "earlier report"}
    for name, text in {**earlier, "bench.json": "{}"}.items():
        (tmp_path / name).write_text(text)
    # The smoke splits' first rows hold no debt_collection complaint: omit another class.
    metrics = run_reference.main(["--profile", "smoke", "--seeds", "0", "1", "--sweep_temperatures", "2",
                                  "--sweep_alphas", "0.5", "--notebook", "false", "--out_dir", str(tmp_path),
                                  "--omitted_class", "payment_problem", "--oof", "true", "--oof_folds", "2"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("teacher", "student_hard", "student_distilled"):
        assert ROW_KEYS <= set(saved[name]), f"{name} lacks {ROW_KEYS - set(saved[name])}"
    assert len(saved["student_distilled"]["macro_f1"]) == 2, "one value per seed"
    assert [(r["temperature"], r["alpha"]) for r in saved["sweep"]] == [(1.0, 0.0), (2.0, 0.5)]
    assert 0 < saved["retained_accuracy"]["student_distilled"] < 2
    assert saved["teacher"]["agreement"] == 1.0 and metrics["soft_labels"]["fingerprint"]
    for name in ("report.md", "config.json", "runs.jsonl", "training_curves.png", "sweep_macro_f1.png",
                 "confusion_distilled.png", "reliability.png", "class_similarity.png"):
        assert (tmp_path / name).exists(), f"{name} was not written"
    report = (tmp_path / "report.md").read_text()
    assert "Did distillation help?" in report
    check_demo_keys(saved, report, tmp_path)
    [kept] = (tmp_path / "history").iterdir()
    assert {p.name: p.read_text() for p in kept.iterdir()} == earlier
    assert (tmp_path / "bench.json").read_text() == "{}"


def check_demo_keys(saved: dict, report: str, folder: Path) -> None:
    """metrics.json's toy, omitted_class and oof, as issue 15 names them, lists over the seeds."""
    for name in ("hard", "distilled"):
        assert {"accuracy", "agreement"} <= set(saved["toy"][name]) and len(saved["toy"][name]["accuracy"]) == 2
    omitted = saved["omitted_class"]
    assert omitted["label"] == "payment_problem"
    for key in ("teacher_recall", "hard_recall", "distilled_recall", "distilled_recall_bias_fixed"):
        assert len(omitted[key]) == 2 and all(0 <= v <= 1 for v in omitted[key]), key
    for name in ("in_sample", "out_of_fold"):
        assert {k: len(saved["oof"][name][k]) for k in ("macro_f1", "agreement", "ece")} == dict.fromkeys(
            ("macro_f1", "agreement", "ece"), 2)
    for heading in ("## 2-D toy", "## A class the students never saw: `payment_problem`",
                    "## Out-of-fold soft labels (2 folds)"):
        assert heading in report
    for name in ("temperature_bars.png", "toy_maps.png", "omitted_class.png", "oof.png"):
        assert (folder / name).exists() and f"({name})" in report, name


def test_each_teacher_has_its_own_soft_label_cache_and_a_damaged_one_is_refused(
        tmp_path, monkeypatch, smoke_profile, smoke_splits):
    """Another teacher's soft labels go to another file (both kept); a file whose stored fingerprint
    is not its name's is refused with a message, and --recompute_stale_cache keeps it aside."""
    import kdcourse.paths
    monkeypatch.setattr(kdcourse.paths, "CACHE_DIR", tmp_path)
    data = smoke_splits["train"]
    first, old = soft_label_cache("train", smoke_profile, data, "tok", "teacher-1")
    assert first == kdcourse.paths.soft_label_cache(smoke_profile.name, "train", old)
    cached_logits(first, old, lambda: torch.zeros(len(data), 8))
    second, new = soft_label_cache("train", smoke_profile, data, "tok", "teacher-2")
    assert second != first and cached_logits(second, new, lambda: torch.ones(len(data), 8)).eq(1).all()
    assert cached_logits(first, old, lambda: torch.ones(len(data), 8)).eq(0).all(), "the first is kept"
    second.unlink()
    first.rename(second)            # teacher-1's logits under teacher-2's name
    with pytest.raises(StaleCacheError, match="Delete or move the file"):
        cached_logits(second, new, lambda: torch.ones(len(data), 8))
    path, new = soft_label_cache("train", smoke_profile, data, "tok", "teacher-2", recompute_stale=True)
    assert not path.exists() and list(tmp_path.rglob(f"*.stale-{old}")), "the stale file is kept aside"
    assert cached_logits(path, new, lambda: torch.ones(len(data), 8)).eq(1).all()


def test_a_soft_label_cache_of_the_earlier_name_is_read_if_its_fingerprint_matches(
        tmp_path, monkeypatch, smoke_profile, smoke_splits):
    """reference-<split>.safetensors (the earlier fixed name) is renamed, not recomputed, when it
    holds this teacher's fingerprint; another teacher's stays where it is, unused."""
    import kdcourse.paths
    from kdcourse.logits_cache import save_logits
    from kdcourse.soft_labels import legacy_soft_label_cache
    monkeypatch.setattr(kdcourse.paths, "CACHE_DIR", tmp_path)
    data = smoke_splits["validation"]
    legacy = legacy_soft_label_cache(smoke_profile.name, "validation")
    _, fingerprint = soft_label_cache("validation", smoke_profile, data, "tok", "teacher-1")
    save_logits(legacy, torch.full((len(data), 8), 3.0), fingerprint)
    path, _ = soft_label_cache("validation", smoke_profile, data, "tok", "teacher-1")
    assert not legacy.exists() and cached_logits(path, fingerprint, lambda: torch.ones(1)).eq(3).all()
    save_logits(legacy, torch.zeros(len(data), 8), "another-teacher")
    path, _ = soft_label_cache("validation", smoke_profile, data, "tok", "teacher-2")
    assert legacy.exists() and not path.exists()


@pytest.mark.slow
@pytest.mark.xdist_group("distill")
@pytest.mark.parametrize("bf16_weights", ["false", "true"], ids=["fp32", "bf16-weights"])
def test_resume_after_an_interruption_gives_the_same_result(tmp_path, bf16_weights):
    """Stopped after 5 steps and started again, the run ends with the same losses and weights
    (with bf16 weights too: the checkpoint holds the fp32 master copies)."""
    args = ["--profile", "smoke", "--checkpoint_every", "3", "--bf16_weights", bf16_weights]
    full = train_distill.main(args + ["--out_dir", str(tmp_path / "full")])
    train_distill.main(args + ["--out_dir", str(tmp_path / "resumed"), "--stop_after", "5"])
    resumed = train_distill.main(args + ["--out_dir", str(tmp_path / "resumed")])
    assert resumed["resumed_from"] == 3, "the second run must start from the step-3 checkpoint"
    assert resumed["losses"] == full["losses"]
    assert resumed["checksum"] == full["checksum"]
    assert resumed["validation"] == full["validation"]


@pytest.mark.slow
@pytest.mark.xdist_group("distill")
def test_resuming_with_other_weight_settings_is_refused_and_the_checkpoint_kept(tmp_path):
    args = ["--profile", "smoke", "--checkpoint_every", "2", "--out_dir", str(tmp_path)]
    train_distill.main(args + ["--stop_after", "2"])
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(RuntimeError, match="saved by a run with other settings"):
        train_distill.main(args + ["--bf16_weights", "true"])
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.xdist_group("distill")
@pytest.mark.parametrize("launcher, bf16_weights", [("torchrun", "false"), ("torchrun", "true"),
                                                    ("accelerate", "false")],
                         ids=["torchrun-fp32", "torchrun-bf16-weights", "accelerate-fp32"])
def test_ddp_with_two_cpu_processes(tmp_path, launcher, bf16_weights):
    """torchrun or accelerate launch with 2 gloo processes: each rank trains on half the batches,
    weights stay equal (bf16 weights too: DDP averages bf16 gradients, each rank's fp32 masters
    take the same step). accelerate starts 2 CPU processes only with --multi_gpu (with --cpu alone
    it runs one, unless MPI is set up)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = str(_free_port())
    command = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
               if launcher == "torchrun" else
               [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--main_process_port", port])
    command += [str(REFERENCE / "train_distill.py"), "--profile", "smoke", "--checkpoint_every", "2",
                "--out_dir", str(tmp_path), "--bf16_weights", bf16_weights]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-9), "ranks diverged"
    assert ranks[0]["tokens"] != ranks[1]["tokens"], "both ranks saw the same batches"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and (tmp_path / "checkpoint.pt").exists()


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(16, 3)

    def forward(self, input_ids, attention_mask):
        return type("Out", (), {"logits": self.embed(input_ids)})()


def _toy_batches(epoch):
    g = torch.Generator().manual_seed(epoch)
    return [{"input_ids": torch.randint(0, 16, (4, 5), generator=g), "attention_mask": torch.ones(4, 5),
             "labels": torch.randint(0, 3, (4,), generator=g), "teacher_logits": torch.randn(4, 3, generator=g)}
            for _ in range(3)]


def test_reference_options_are_checked_before_any_work():
    with pytest.raises(ValueError, match="unknown attention"):
        run_reference.ReferenceConfig(attention="flash")
    with pytest.raises(ValueError, match="unknown compile_mode"):
        run_reference.ReferenceConfig(compile_mode="fast")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        run_reference.main(["--profile", "smoke", "--attention", "flex_attention", "--device", "cpu"])


@pytest.mark.parametrize("bad, message", [({"temperature": 0}, "temperature"), ({"alpha": 1.5}, "alpha"),
                                          ({"epochs": 0}, "epochs"), ({"checkpoint_every": -1}, "checkpoint_every"),
                                          ({"stop_after": 0}, "stop_after"), ({"max_grad_norm": 0}, "max_grad_norm")])
def test_distill_options_are_checked_before_any_work(bad, message):
    with pytest.raises(ValueError, match=message):
        train_distill.DistillConfig(**bad)


def test_a_nan_loss_stops_the_run_naming_the_step():
    """A NaN loss raises NonFiniteLossError that names the step."""
    model = _Toy()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def loss_fn(logits, teacher_logits, labels, temperature, alpha):
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if len(calls) == 2 else loss

    with pytest.raises(NonFiniteLossError, match="loss is nan at step 2"):
        fit_distillation(model, _toy_batches, optimizer, loss_fn, temperature=2.0, alpha=0.5, epochs=1)


def test_out_of_memory_names_batch_size_and_length():
    """Out-of-memory is re-raised with the settings to lower."""
    with pytest.raises(torch.cuda.OutOfMemoryError, match="batch size 32 and max length 512"):
        with oom_hint(32, 512):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.slow
def test_the_gpu_commands_run_on_local_hub_style_checkpoints(tmp_path, smoke_tokenizer):
    """What a TA with internet runs (`make teacher`, `make reference` on a profile naming pretrained
    masked-LM checkpoints and their tokenizer, loaded with from_pretrained), here on tiny checkpoints
    saved to disk in the released format: the classifier heads are new, the label maps ours."""
    from transformers import ModernBertConfig, ModernBertForMaskedLM
    smoke_tokenizer.save_pretrained(tmp_path / "tokenizer")
    ids = {k: getattr(smoke_tokenizer, f"{k}_token_id") for k in ("pad", "cls", "sep")}
    for name, width, layers in (("large", 64, 2), ("base", 32, 1)):
        config = ModernBertConfig(vocab_size=len(smoke_tokenizer), hidden_size=width, num_hidden_layers=layers,
                                  num_attention_heads=2, intermediate_size=2 * width, pad_token_id=ids["pad"],
                                  bos_token_id=ids["cls"], eos_token_id=ids["sep"], cls_token_id=ids["cls"],
                                  sep_token_id=ids["sep"], classifier_pooling="mean")
        torch.manual_seed(0)
        ModernBertForMaskedLM(config).save_pretrained(tmp_path / f"ModernBERT-{name}")
    (tmp_path / "profiles.toml").write_text(f"""
[localhub]
extends = "gpu"
teacher = "{tmp_path / 'ModernBERT-large'}"
student = "{tmp_path / 'ModernBERT-base'}"
tokenizer = "{tmp_path / 'tokenizer'}"
max_length = 64
train_batch_size = 16
eval_batch_size = 64
max_train_samples = 256
max_eval_samples = 128
teacher_epochs = 1
student_epochs = 1
precision = "fp32"
""")
    env = dict(os.environ, KD_PROFILES=str(tmp_path / "profiles.toml"), KD_CACHE_DIR=str(tmp_path / "cache"),
               KD_CHECKPOINT_DIR=str(tmp_path / "checkpoints"), KD_RUNS_DIR=str(tmp_path / "runs"),
               CUDA_VISIBLE_DEVICES="")
    commands = [[sys.executable, "-m", "kdcourse.teacher", "--profile", "localhub"],
                [sys.executable, str(REFERENCE / "run_reference.py"), "--profile", "localhub", "--seeds", "0",
                 "--sweep_temperatures", "2", "--sweep_alphas", "0.5", "--notebook", "false"]]
    for command in commands:
        done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    teacher = tmp_path / "checkpoints" / "localhub" / "teacher"
    from kdcourse.data import load_label_names
    id2label = json.loads((teacher / "config.json").read_text())["id2label"]
    assert [id2label[str(i)] for i in range(len(id2label))] == load_label_names()
    metrics = json.loads((tmp_path / "runs" / "localhub" / "metrics.json").read_text())
    for name in ("teacher", "student_hard", "student_distilled"):
        assert ROW_KEYS <= set(metrics[name]), name
    assert metrics["teacher"]["params"] > metrics["student_distilled"]["params"]


@pytest.mark.slow
def test_make_teacher_refuses_to_replace_a_teacher_and_keeps_it_when_told_to(tmp_path, smoke_profile):
    """A fine-tuned teacher may be hours of GPU time: `make teacher` stops before any work when one
    is there; with --overwrite it trains and keeps the old one as teacher.previous."""
    from kdcourse.teacher import main
    folder = tmp_path / "teacher"
    folder.mkdir()
    old = {"config.json": '{"old": true}',
           "metrics.json": json.dumps({"validation": {"macro_f1": 0.912}, "train_seconds": 5400})}
    for name, text in old.items():
        (folder / name).write_text(text)
    with pytest.raises(SystemExit, match=r"already at .*teacher \(validation macro-F1 0.912, 5400 s"
                                         r".*ARGS=--overwrite"):
        main(["--profile", "smoke", "--output-dir", str(folder)])   # the old spelling still works
    assert {p.name: p.read_text() for p in folder.iterdir()} == old
    main(["--profile", "smoke", "--out_dir", str(folder), "--overwrite"])
    assert "ModernBertForSequenceClassification" in (folder / "config.json").read_text()
    assert {p.name: p.read_text() for p in (tmp_path / "teacher.previous").iterdir()} == old
