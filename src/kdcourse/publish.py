"""Publish the course's fine-tuned teacher, and load a published one in place of fine-tuning.

    python -m kdcourse.publish --profile gpu                          # make publish-teacher PROFILE=gpu
    python -m kdcourse.publish --profile gpu --push my-course/week6-teacher   # needs a HF token

`dist/teacher-<profile>/` holds the weights (safetensors), config, tokenizer, label map, the
teacher's metrics.json, `fingerprint.json` (the data, tokenizer and weights its soft labels
depend on) and a model card (README.md). A profile with `teacher_checkpoint = "<hub id or
folder>"` then makes `get_teacher` load that teacher, once its labels, data and tokenizer match
the student's; what differs is named when they do not.
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kdcourse.cli import parse_config
from kdcourse.data import SPLITS
from kdcourse.errors import KDError, run_cli
from kdcourse.paths import DIST_DIR, REPO_ROOT
from kdcourse.profiles import Profile, get_profile

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"
LABEL_MAP = "label_map.json"


class TeacherMismatchError(KDError, ValueError):
    """A published teacher was made for other labels, data or tokenizer than this profile's."""


def data_fingerprints(profile: Profile) -> dict:
    """{split: dataset_fingerprint} of the profile's splits (with its sample caps)."""
    from kdcourse.data import load_splits
    from kdcourse.logits_cache import dataset_fingerprint
    from kdcourse.teacher import sample_caps
    splits = load_splits(max_samples=sample_caps(profile))
    return {split: dataset_fingerprint(splits[split]) for split in SPLITS}


def fingerprint(profile: Profile, teacher, tokenizer, label_names) -> dict:
    """What a teacher's soft labels depend on: labels, data, tokenizer and its own weights."""
    from kdcourse.logits_cache import model_fingerprint, tokenizer_fingerprint
    return {"labels": list(label_names), "data": data_fingerprints(profile),
            "tokenizer": tokenizer_fingerprint(tokenizer), "teacher": model_fingerprint(teacher),
            "max_length": profile.max_length, "profile": profile.name}


def publish_teacher(profile: Profile, out: Path | None = None) -> Path:
    """Write the profile's teacher (fine-tuned first if an offline profile has none) to `out`
    (default dist/teacher-<profile>/), replacing an earlier copy there; returns the folder."""
    from kdcourse.data import load_label_names
    from kdcourse.models import checkpoint_dir, load_tokenizer
    from kdcourse.publish_card import model_card
    from kdcourse.teacher import get_teacher
    out = Path(out or DIST_DIR / f"teacher-{profile.name}")
    label_names = load_label_names()
    teacher = get_teacher(profile, label_names)
    source = Path(profile.teacher_checkpoint) if profile.teacher_checkpoint else checkpoint_dir(profile)
    metrics = json.loads((resolve_checkpoint(str(source)) / "metrics.json").read_text())
    tokenizer = load_tokenizer(profile)
    prints = fingerprint(profile, teacher, tokenizer, label_names)
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    teacher.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    (staging / LABEL_MAP).write_text(json.dumps({"id2label": dict(enumerate(label_names)),
                                                 "label2id": {n: i for i, n in enumerate(label_names)}},
                                                indent=1) + "\n")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    (staging / FINGERPRINT).write_text(json.dumps(prints, indent=1) + "\n")
    (staging / "README.md").write_text(model_card(profile, metrics, prints))
    if out.exists():
        shutil.rmtree(out)             # a build output: the checkpoint it came from is kept
    staging.rename(out)
    log.info("published the %s teacher to %s", profile.name, out)
    return out


def resolve_checkpoint(source: str) -> Path:
    """A local folder for a published teacher: a path (absolute, or relative to the current
    folder or the repo) or a hub id, downloaded once into the Hugging Face cache."""
    for path in (Path(source).expanduser(), REPO_ROOT / source):
        if path.is_dir():
            return path
    if source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise FileNotFoundError(f"teacher_checkpoint {source!r} is not a folder here, nor a hub id "
                                "(owner/name): fix the profile's teacher_checkpoint")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(repo_id=source))
    except Exception as err:  # noqa: BLE001  offline, unknown repo, no access: one clear line
        raise FileNotFoundError(f"cannot download the teacher {source!r} from the Hugging Face Hub "
                                f"({type(err).__name__}: {str(err).splitlines()[0][:200]}): check the "
                                "network, the id and your access, or point teacher_checkpoint at "
                                "a copied folder") from None


def check_published(folder: Path, profile: Profile, label_names, tokenizer) -> dict:
    """The folder's fingerprint.json, once labels, data and tokenizer match this profile's;
    TeacherMismatchError naming every difference otherwise."""
    from kdcourse.logits_cache import tokenizer_fingerprint
    path = folder / FINGERPRINT
    if not path.exists():
        raise TeacherMismatchError(f"{folder} has no {FINGERPRINT}: it is not a teacher published "
                                   "by `make publish-teacher`; publish it with that command")
    published = json.loads(path.read_text())
    problems = []
    if published["labels"] != list(label_names):
        missing = sorted(set(label_names) - set(published["labels"]))
        extra = sorted(set(published["labels"]) - set(label_names))
        problems.append(f"label map: the teacher has {len(published['labels'])} labels, the data "
                        f"{len(label_names)}" + (f"; the teacher lacks {missing}" if missing else "")
                        + (f"; only the teacher has {extra}" if extra else "")
                        + ("" if missing or extra else "; same labels in another order"))
    here = data_fingerprints(profile)
    for split in SPLITS:
        if published["data"].get(split) != here[split]:
            problems.append(f"data: the {split} split differs (fingerprint {published['data'].get(split)} "
                            f"when published, {here[split]} here: other data or sample caps)")
    if published["tokenizer"] != tokenizer_fingerprint(tokenizer):
        problems.append("tokenizer: the profile's tokenizer is not the one the teacher was trained "
                        f"with (profile tokenizer = {profile.tokenizer!r})")
    if problems:
        raise TeacherMismatchError(f"the published teacher in {folder} does not match profile "
                                   f"{profile.name!r}; its soft labels would not fit this data:\n  - "
                                   + "\n  - ".join(problems))
    return published


def load_published_teacher(profile: Profile, label_names):
    """The teacher named by the profile's teacher_checkpoint, checked, in eval mode."""
    from kdcourse.logits_cache import model_fingerprint
    from kdcourse.models import load_teacher, load_tokenizer
    folder = resolve_checkpoint(profile.teacher_checkpoint)
    published = check_published(folder, profile, label_names, load_tokenizer(profile))
    teacher = load_teacher(profile, label_names, folder)
    if model_fingerprint(teacher) != published["teacher"]:
        raise TeacherMismatchError(f"the weights in {folder} are not the ones published (fingerprint "
                                   f"{model_fingerprint(teacher)}, published {published['teacher']}): "
                                   "copy or download the folder again")
    log.info("teacher: the published %s (no fine-tuning)", folder)
    return teacher


def push(folder: Path, repo_id: str) -> str:
    """Upload `folder` to the Hub repo `repo_id` (created if needed); SystemExit in one line
    without a token or network."""
    from huggingface_hub import HfApi, get_token
    if not get_token():
        raise SystemExit(f"no Hugging Face token: run `hf auth login` (or set HF_TOKEN), then push "
                         f"again; the teacher is ready in {folder}")
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message=f"Publish the course teacher ({folder.name})")
    except Exception as err:  # noqa: BLE001  offline, bad token, no rights: one clear line
        raise SystemExit(f"could not push {folder} to {repo_id} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:200] if str(err) else ''}): check the network, "
                         "the token's write access and the repo id") from None
    return getattr(commit, "commit_url", f"https://huggingface.co/{repo_id}")


@dataclass
class PublishConfig:
    """`make publish-teacher`'s options (`--name value`)."""
    profile: str = field(default="cpu", metadata={"help": "profile name (configs/profiles.toml)"})
    out_dir: Path | None = field(default=None, metadata={"help": "default: dist/teacher-<profile>"})
    push: str | None = field(default=None, metadata={
        "help": "REPO_ID: also upload the folder to this Hugging Face Hub repo (needs a token)"})


def main(argv=None):
    (args,) = parse_config(PublishConfig, argv, description="Publish a profile's fine-tuned teacher.")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        out = publish_teacher(get_profile(args.profile), args.out_dir)
    except (FileNotFoundError, TeacherMismatchError) as err:
        raise SystemExit(str(err)) from None
    print(f"teacher -> {out}: students set teacher_checkpoint = \"{out}\" (or the hub id) in "
          "their profile")
    if args.push:
        print(f"pushed to {push(out, args.push)}")


if __name__ == "__main__":
    run_cli(main)
