"""The student wheel of kdcourse (what a JupyterHub image installs) works without a checkout
around it: it carries the data splits and the profiles, holds only the kit's modules, and loads
both from a folder that is not the checkout.

`student_kit.build_wheel` builds it offline from a copy of the sources (a build in place would
write build/ and egg-info into the checkout); the test installs it with the project's pip into a
fresh venv without pip, which sees the project's third-party packages through a .pth line (torch
is not installed twice).
"""
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder import student_kit
from kdcourse.paths import RELEASE_NOTEBOOK, REPO_ROOT


def run(command, **kwargs):
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return student_kit.build_wheel(tmp_path_factory.mktemp("wheels"))


def test_wheel_carries_the_splits_and_profiles(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = "kdcourse/_bundled/"
    assert {bundled + f"data/cfpb/{n}" for n in ("labels.json", "train.parquet", "validation.parquet",
                                                 "test.parquet")} <= names
    assert bundled + "configs/profiles.toml" in names
    assert "kdcourse/paths.py" in names and "kdcourse/data.py" in names
    # The kit's modules only: kdcourse.distributed's training loop would answer train_student.
    modules = {n.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for n in names
               if n.startswith("kdcourse/") and n.endswith(".py")}
    expected = student_kit.package_closure(student_kit.notebook_imports(RELEASE_NOTEBOOK) | {"kdcourse"},
                                           REPO_ROOT / "src")
    assert modules == set(expected)
    assert not {"kdcourse.distributed", "kdcourse.perf.bench", "kdcourse.perf.traffic"} & modules
    assert not [n for n in names if n.startswith(("solutions/", "autograder/", "data/raw"))]


def test_wheel_loads_splits_and_a_profile_outside_the_checkout(wheel, tmp_path):
    venv = tmp_path / "hub-env"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    # The project's site-packages, as a plain path: its own .pth files (the editable install of
    # this checkout) are not processed, so only the wheel can provide kdcourse.
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
    Path(purelib, "project-packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", str(wheel)])
    probe = ("import kdcourse, kdcourse.paths as p\n"
             "from kdcourse.data import load_splits\n"
             "from kdcourse.profiles import get_profile\n"
             "splits = load_splits()\n"
             "print(kdcourse.__file__, p.DATA_DIR, p.PROFILES_FILE, p.CACHE_DIR)\n"
             "print({k: len(v) for k, v in splits.items()}, get_profile('smoke').name)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KD_", "PYTHON"))}
    env.update(KD_HOME=str(tmp_path / "home"), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where, sizes = run([str(python), "-c", probe], cwd=cwd, env=env).strip().splitlines()[-2:]
    package, data_dir, profiles, cache = (Path(p) for p in where.split())
    assert package.is_relative_to(venv), f"kdcourse came from {package}, not the wheel"
    assert data_dir == package.parent / "_bundled" / "data"
    assert profiles == package.parent / "_bundled" / "configs" / "profiles.toml"
    assert cache == tmp_path / "home" / ".cache"
    assert sizes == "{'train': 7672, 'validation': 959, 'test': 960} smoke"
