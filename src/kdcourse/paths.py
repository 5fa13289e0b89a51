"""Where things live: the repo root and its standard folders (overridable by environment)."""
import datetime
import logging
import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("KD_DATA_DIR", REPO_ROOT / "data"))
# Built-on-first-use artefacts (tiny tokenizer and models, cached logits): never committed.
CACHE_DIR = Path(os.environ.get("KD_CACHE_DIR", REPO_ROOT / ".cache"))
CHECKPOINT_DIR = Path(os.environ.get("KD_CHECKPOINT_DIR", REPO_ROOT / "checkpoints"))
RUNS_DIR = Path(os.environ.get("KD_RUNS_DIR", REPO_ROOT / "runs"))
SOLUTION_NOTEBOOK = REPO_ROOT / "solutions" / "week6_distillation" / "distillation.ipynb"
RELEASE_NOTEBOOK = REPO_ROOT / "assignments" / "week6_distillation" / "distillation.ipynb"


def move_to_history(folder: Path, names, copy: bool = False) -> Path | None:
    """Move the files `names` that exist in `folder` to folder/history/<UTC time>/ before a command
    writes new ones there, so an earlier result is never overwritten or mixed with a new one
    (`copy`: copy them, for a command that updates them in place). Returns that history folder,
    or None when none of the files existed."""
    files = [Path(folder) / name for name in names if (Path(folder) / name).exists()]
    if not files:
        return None
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    history = Path(folder) / "history" / stamp
    history.mkdir(parents=True)
    for path in files:
        if copy:
            shutil.copy2(path, history / path.name)
        else:
            path.rename(history / path.name)
    logging.getLogger(__name__).info("the earlier %s %s to %s", ", ".join(p.name for p in files),
                                     "copied" if copy else "moved", history)
    return history
