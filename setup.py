"""Wheel build step (the rest of the build is in pyproject.toml).

A wheel installed on a JupyterHub image has no checkout around it, so the data splits and the model
profiles travel inside the package, as `kdcourse/_bundled/data/cfpb/*` and
`kdcourse/_bundled/configs/profiles.toml`, where `kdcourse.paths` looks for them. An editable
install (`pip install -e .`, what `make venv` does) reads the checkout's folders instead.

    pip wheel --no-deps --no-build-isolation -w dist/ .
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ["data/cfpb/labels.json", "data/cfpb/*.parquet", "configs/profiles.toml"]


class BuildPyWithData(build_py):
    """build_py, then copy BUNDLED into the built package (not for editable installs)."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "kdcourse" / "_bundled"
        for pattern in BUNDLED:
            files = sorted(ROOT.glob(pattern))
            if not files:
                raise FileNotFoundError(f"{ROOT / pattern} is missing: run `make data` before building")
            for path in files:
                destination = target / path.relative_to(ROOT)
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.copy_file(str(path), str(destination), preserve_mode=False)

setup(cmdclass={"build_py": BuildPyWithData})
