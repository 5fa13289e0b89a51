"""`make full-size`: the gpu-shapes profile builds the released shapes, and the stage-by-stage script
runs end to end on the smoke models (its dry run, so no GPU minute goes to a script that fails)."""
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from kdcourse.perf import full_size
from kdcourse.models import expand_released, load_tokenizer, tiny_config
from kdcourse.profiles import get_profile

STAGES = ["teacher_memory", "teacher", "soft_labels", "student_hard", "student_distilled"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The smoke profile's tokenizer and token ids, as `make full-size-data PROFILE=smoke` writes them."""
    return full_size.prepare_data(get_profile("smoke"), tmp_path_factory.mktemp("full_size") / "smoke")


@pytest.mark.parametrize("role, shape, millions", [
    ("teacher", (1024, 28, 16, 2624), 395.8), ("student", (768, 22, 12, 1152), 149.6)])
def test_gpu_shapes_builds_the_released_models(role, shape, millions):
    """ModernBERT-large and -base as released (395M and 149M parameters with 8 labels), with their
    50,368-token vocabulary and 128-token window, from a tokenizer trained here."""
    profile = get_profile("gpu-shapes")
    assert profile.vocab_size == 50368 and profile.max_length == 512 and profile.precision == "bf16"
    tokenizer = load_tokenizer(profile)
    config = tiny_config(getattr(profile, f"{role}_config"), tokenizer, [str(i) for i in range(8)], 512)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
            config.intermediate_size) == shape
    assert (config.vocab_size, config.local_attention, config.global_attn_every_n_layers) == (50368, 128, 3)
    assert config.pad_token_id == tokenizer.pad_token_id  # our tokenizer's ids, not the hub's
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModelForSequenceClassification.from_config(config)
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)


def test_released_shapes_take_overrides_and_refuse_unknown_names():
    assert expand_released({"released": "base", "num_hidden_layers": 2})["num_hidden_layers"] == 2
    assert expand_released({"hidden_size": 64}) == {"hidden_size": 64}
    with pytest.raises(ValueError, match="released = 'xl'.*'base', 'large'"):
        expand_released({"released": "xl"})


def test_loss_summary_flags_the_first_non_finite_step():
    summary = full_size.loss_summary([2.0, 1.5, math.nan, 1.0])
    assert summary["finite"] is False and summary["notes"] == {"first_non_finite_step": 3}
    assert full_size.loss_summary([2.0, 1.0]) == {"losses": 2, "finite": True, "first_loss": 2.0, "last_loss": 1.0}


def test_data_prepared_for_other_settings_is_refused(prepared):
    with pytest.raises(ValueError, match="was prepared for .*full-size-data PROFILE=smoke"):
        full_size.load_data(get_profile("smoke", max_length=32), prepared)
    with pytest.raises(FileNotFoundError, match="make full-size-data PROFILE=smoke"):
        full_size.load_data(get_profile("smoke"), prepared.parent / "missing")


@pytest.mark.slow
def test_every_stage_runs_on_the_smoke_models(prepared, tmp_path):
    """Five stages, each timed with finite losses; the JSON and the table agree; an earlier record
    moves to history/ first."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "full_size.json").write_text('{"earlier": true}')
    record = full_size.main(["--profile", "smoke", "--data_dir", str(prepared), "--out_dir", str(out)])
    saved = json.loads((out / "full_size.json").read_text())
    assert [s["name"] for s in saved["stages"]] == STAGES and saved["all_finite"] and saved["failed"] is None
    train_tokens = sum(len(e["input_ids"]) for e in full_size.load_data(get_profile("smoke"), prepared)[2]["train"])
    by_name = {s.name: s for s in record.stages}
    for name in ("teacher", "student_hard", "student_distilled"):  # one epoch each of the same split
        assert by_name[name].tokens == train_tokens and by_name[name].losses == 8, name  # 256 texts / 32
    assert by_name["teacher_memory"].tokens == 32 * 64 and by_name["teacher_memory"].losses == 2
    assert by_name["soft_labels"].notes["agreement"] == 1.0  # the teacher agrees with its own logits
    assert all(s["tokens_per_s"] > 0 and s["seconds"] >= s["loop_seconds"] for s in saved["stages"])
    table = (out / "full_size.md").read_text()
    assert all(f"| {name} |" in table for name in STAGES) and "**NO**" not in table
    assert [p.read_text() for p in (out / "history").glob("*/full_size.json")] == ['{"earlier": true}']


def test_a_failing_stage_is_recorded_and_exits_non_zero(prepared, tmp_path, monkeypatch):
    """A stage that raises ends the run: the record says which and why, and the command fails."""
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
    monkeypatch.setattr(full_size, "teacher_memory", out_of_memory)
    with pytest.raises(SystemExit, match="teacher_memory: OutOfMemoryError"):
        full_size.main(["--profile", "smoke", "--data_dir", str(prepared), "--out_dir", str(tmp_path)])
    saved = json.loads((tmp_path / "full_size.json").read_text())
    assert saved["stages"] == [] and "simulated" in saved["failed"]


# Run at start-up through PYTHONPATH: availability checks (transformers') see no `datasets`, imports fail.
ABSENT_DATASETS = """
import importlib.util, sys
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (
    None if name.split(".")[0] == "datasets" else _find_spec(name, package))
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "datasets":
            raise ModuleNotFoundError(f"No module named {name!r} (as on the GPU image)")
sys.meta_path.insert(0, Absent())
"""


@pytest.mark.slow
def test_the_gpu_session_runs_the_full_size_row_without_datasets(prepared, tmp_path):
    """gpu_session.sh's first row as a GPU call runs it: `datasets` missing (as in the GPU image), the
    data prepared ahead and carried. Every stage finite, the record in $OUT/full_size/, the table printed."""
    repo = Path(__file__).resolve().parents[1]
    cache, block, out = tmp_path / "cache", tmp_path / "block", tmp_path / "session"
    shutil.copytree(prepared, cache / "full_size" / "smoke")
    block.mkdir()
    (block / "sitecustomize.py").write_text(ABSENT_DATASETS)
    env = dict(os.environ, OUT=str(out), BENCH_PROFILE="smoke", BUDGET="400", ROWS="full_size", PY=sys.executable,
               KD_CACHE_DIR=str(cache), PYTHONPATH=str(block))
    done = subprocess.run(["bash", str(repo / "solutions" / "reference" / "gpu_session.sh")], env=env,
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["full_size"], done.stdout[-3000:]  # no failures.log
    record = json.loads((out / "full_size" / "full_size.json").read_text())
    assert record["all_finite"] and record["failed"] is None and len(record["stages"]) == 5
    assert "| student_distilled |" in done.stdout
