"""Where things live: the project folder and its standard folders (overridable by environment).

kdcourse finds its data and profiles in one of three layouts, first match wins:
- this checkout: the package is `src/kdcourse`, the project is two folders up;
- the student kit (`make student-kit`): the package sits beside `data/` and `configs/`;
- an installed wheel (a JupyterHub image): the splits and profiles travel inside the package, in
  `kdcourse/_bundled/` (put there by the wheel build, see setup.py), and the folders that receive
  built files (.cache, checkpoints, runs) go to $KD_HOME, by default ~/kdcourse.
$KD_DATA_DIR, $KD_CACHE_DIR, $KD_CHECKPOINT_DIR, $KD_RUNS_DIR override each folder in every layout.
"""
import datetime
import logging
import os
import shutil
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# What an installed wheel carries: data/cfpb/* and configs/profiles.toml, same relative paths.
BUNDLED_DIR = PACKAGE_DIR / "_bundled"
PROFILES_RELATIVE = Path("configs") / "profiles.toml"


def find_project_root() -> Path | None:
    """The folder that holds configs/profiles.toml beside the package (kit) or two levels up
    (checkout); None for an installed wheel."""
    for root in (PACKAGE_DIR.parent, PACKAGE_DIR.parents[1]):
        if (root / PROFILES_RELATIVE).is_file():
            return root
    return None


PROJECT_ROOT = find_project_root()
# The project folder (checkout or kit); for an installed wheel, the folder built files go to.
REPO_ROOT = PROJECT_ROOT or Path(os.environ.get("KD_HOME", Path.home() / "kdcourse"))
_SHIPPED = PROJECT_ROOT or BUNDLED_DIR  # where data/ and configs/ are read from
DATA_DIR = Path(os.environ.get("KD_DATA_DIR", _SHIPPED / "data"))
PROFILES_FILE = _SHIPPED / PROFILES_RELATIVE
# Built-on-first-use artefacts (tiny tokenizer and models, cached logits): never committed.
CACHE_DIR = Path(os.environ.get("KD_CACHE_DIR", REPO_ROOT / ".cache"))
CHECKPOINT_DIR = Path(os.environ.get("KD_CHECKPOINT_DIR", REPO_ROOT / "checkpoints"))
RUNS_DIR = Path(os.environ.get("KD_RUNS_DIR", REPO_ROOT / "runs"))
# What is built to hand out (student kit, Gradescope bundle, published teacher): git-ignored.
DIST_DIR = REPO_ROOT / "dist"
SOLUTION_NOTEBOOK = REPO_ROOT / "solutions" / "week6_distillation" / "distillation.ipynb"
RELEASE_NOTEBOOK = REPO_ROOT / "assignments" / "week6_distillation" / "distillation.ipynb"


def soft_label_cache(profile: str, split: str, fingerprint: str) -> Path:
    """The one name of a cached soft-label file (logits [N, C] of a split):
    CACHE_DIR/logits/<profile>/<split>-<fingerprint>.safetensors. Other data, tokenizer or teacher
    give another fingerprint, so another file: a cache is never overwritten nor reused for them.
    `split` may carry a prefix naming another source of soft labels ("oof-k3-train")."""
    return CACHE_DIR / "logits" / profile / f"{split}-{fingerprint}.safetensors"


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
