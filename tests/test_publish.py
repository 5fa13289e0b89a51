"""A published teacher: the folder and its model card, identical logits when a fresh copy loads it
through a user profile (KD_PROFILES), and a refusal naming what differs when it does not fit.
On the smoke profile: the cpu profile's code path (same tiny models, fewer rows), in seconds."""
import json
import os
import subprocess
import sys

import pytest
import torch

from kdcourse.profiles import get_profile
from kdcourse.publish import FINGERPRINT, TeacherMismatchError, check_published, publish_teacher

pytestmark = pytest.mark.slow

# The teacher's logits on a split, here rather than in kdcourse: the student kit ships kdcourse,
# and a loop over a loader that collects a teacher's logits would answer Part C.
SPLIT_LOGITS = '''
import torch
@torch.inference_mode()
def split_logits(teacher, profile, split="test"):
    """The teacher's logits [N, num_classes] (float32, CPU) on a split, in split order."""
    from kdcourse.data import load_splits, make_loader, tokenize_splits
    from kdcourse.models import load_tokenizer
    from kdcourse.teacher import sample_caps
    tokenizer = load_tokenizer(profile)
    dataset = tokenize_splits(load_splits(max_samples=sample_caps(profile)), tokenizer,
                              profile.max_length)[split]
    device = next(teacher.parameters()).device
    chunks = []
    for batch in make_loader(dataset, tokenizer, batch_size=profile.eval_batch_size):
        out = teacher(input_ids=batch["input_ids"].to(device),
                      attention_mask=batch["attention_mask"].to(device))
        chunks.append(out.logits.float().cpu())
    return torch.cat(chunks)
'''
_helpers = {}
exec(SPLIT_LOGITS, _helpers)
split_logits = _helpers["split_logits"]

LOAD_IN_A_FRESH_COPY = SPLIT_LOGITS + """
import sys
from safetensors.torch import save_file
from kdcourse.profiles import get_profile
from kdcourse.teacher import get_teacher
profile = get_profile("course")
save_file({"logits": split_logits(get_teacher(profile), profile, "test")}, sys.argv[1])
"""


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    profile = get_profile("smoke")
    return publish_teacher(profile, tmp_path_factory.mktemp("dist") / "teacher-smoke"), profile


def test_the_folder_holds_weights_tokenizer_labels_metrics_fingerprint_and_card(published):
    folder, profile = published
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "label_map.json", "metrics.json",
            FINGERPRINT, "README.md"} <= names, names
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in names)
    card = (folder / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    for key in ("license:", "language:", "library_name: transformers", "pipeline_tag: text-classification",
                "datasets:", "metrics:", "model-index:"):
        assert key in front, key
    for section in ("## Data", "## Labels", "## Training recipe", "## Metrics", "## Intended use",
                    "## Limitations"):
        assert section in body, section
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"{metrics['test']['macro_f1']:.3f}" in body
    labels = json.loads((folder / "label_map.json").read_text())["id2label"]
    assert json.loads((folder / FINGERPRINT).read_text())["labels"] == list(labels.values())


def test_a_fresh_copy_loads_it_through_a_user_profile_with_identical_logits(published, tmp_path):
    """Other cache and checkpoint folders (nothing trained there), teacher_checkpoint in a
    KD_PROFILES file: the same logits on the test split, bit for bit."""
    from kdcourse.teacher import get_teacher
    folder, profile = published
    expected = split_logits(get_teacher(profile), profile, "test")
    (tmp_path / "profiles.toml").write_text(f'[course]\nextends = "smoke"\nteacher_checkpoint = "{folder}"\n')
    env = dict(os.environ, KD_PROFILES=str(tmp_path / "profiles.toml"),
               KD_CACHE_DIR=str(tmp_path / "fresh" / "cache"),
               KD_CHECKPOINT_DIR=str(tmp_path / "fresh" / "checkpoints"))
    proc = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_COPY, str(tmp_path / "logits.safetensors")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / "fresh" / "checkpoints").exists()      # no teacher was fine-tuned
    from safetensors.torch import load_file
    logits = load_file(str(tmp_path / "logits.safetensors"))["logits"]
    assert logits.shape == (profile.max_eval_samples, len(json.loads(
        (folder / "label_map.json").read_text())["id2label"]))
    assert torch.equal(logits, expected)


@pytest.mark.parametrize("change, message", [
    ("labels-reordered", "label map: the teacher has"),
    ("label-renamed", "only the teacher has ['Renamed']"),
    ("other-data", "data: the train split differs"),
    ("other-caps", "data: the train split differs"),
])
def test_a_teacher_for_other_labels_or_data_is_refused_with_what_differs(published, change, message):
    from kdcourse.data import load_label_names
    from kdcourse.models import load_tokenizer
    folder, profile = published
    labels = load_label_names()
    tokenizer = load_tokenizer(profile)
    published_print = json.loads((folder / FINGERPRINT).read_text())
    if change == "labels-reordered":
        labels = labels[::-1]
    elif change == "label-renamed":
        published_print["labels"][0] = "Renamed"
    elif change == "other-data":
        published_print["data"]["train"] = "0123456789abcdef"
    else:
        profile = get_profile("smoke", max_train_samples=profile.max_train_samples // 2)
    original = (folder / FINGERPRINT).read_text()
    try:
        (folder / FINGERPRINT).write_text(json.dumps(published_print))
        with pytest.raises(TeacherMismatchError, match="does not match profile") as err:
            check_published(folder, profile, labels, tokenizer)
    finally:
        (folder / FINGERPRINT).write_text(original)
    assert message in str(err.value), str(err.value)
    assert check_published(folder, get_profile("smoke"), load_label_names(), tokenizer)


def test_push_without_a_token_or_network_is_one_clear_line(published, monkeypatch, tmp_path):
    from kdcourse.publish import push
    folder, _ = published
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))      # no stored token
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="no Hugging Face token: run `hf auth login`"):
        push(folder, "my-course/week6-teacher")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match="could not push .* to my-course/week6-teacher") as err:
        push(folder, "my-course/week6-teacher")
    assert "\n" not in str(err.value)
