"""Where things live: the repo root and its standard folders (overridable by environment)."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("KD_DATA_DIR", REPO_ROOT / "data"))
# Built-on-first-use artefacts (tiny tokenizer and models, cached logits): never committed.
CACHE_DIR = Path(os.environ.get("KD_CACHE_DIR", REPO_ROOT / ".cache"))
CHECKPOINT_DIR = Path(os.environ.get("KD_CHECKPOINT_DIR", REPO_ROOT / "checkpoints"))
RUNS_DIR = Path(os.environ.get("KD_RUNS_DIR", REPO_ROOT / "runs"))
SOLUTION_NOTEBOOK = REPO_ROOT / "solutions" / "week6_distillation" / "distillation.ipynb"
RELEASE_NOTEBOOK = REPO_ROOT / "assignments" / "week6_distillation" / "distillation.ipynb"
