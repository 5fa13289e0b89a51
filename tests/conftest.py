"""Shared fixtures. Built artefacts (tiny tokenizer, smoke teacher) go to a per-code-version folder
outside the checkout, shared by the xdist workers, so a test run never writes into the repo."""
import hashlib
import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_code = b"".join((REPO_ROOT / p).read_bytes() for p in
                 ["configs/profiles.toml", "src/kdcourse/models.py", "src/kdcourse/teacher.py"])
TEST_CACHE = Path(tempfile.gettempdir()) / f"kdcourse-tests-{hashlib.sha1(_code).hexdigest()[:10]}"
# Set before kdcourse is imported: kdcourse.paths reads them once.
os.environ.setdefault("KD_CACHE_DIR", str(TEST_CACHE / "cache"))
os.environ.setdefault("KD_CHECKPOINT_DIR", str(TEST_CACHE / "checkpoints"))
os.environ.setdefault("KD_RUNS_DIR", str(TEST_CACHE / "runs"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may download anything
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def smoke_profile():
    from kdcourse.profiles import get_profile
    return get_profile("smoke")


@pytest.fixture(scope="session")
def label_names():
    from kdcourse.data import load_label_names
    return load_label_names()


@pytest.fixture(scope="session")
def smoke_tokenizer(smoke_profile):
    from kdcourse.models import load_tokenizer
    return load_tokenizer(smoke_profile)


@pytest.fixture(scope="session")
def smoke_splits(smoke_profile):
    from kdcourse.data import load_splits
    return load_splits(max_samples={"train": 96, "validation": 32, "test": 32})
