"""What students get: the released notebook and just enough of the course to run it.

    make student-kit           # -> dist/student/, dist/week6-student.zip, dist/kdcourse-*.whl
    python -m autograder.student_kit --out_dir dist [--wheel false]

The kit holds the released notebook, the modules of `kdcourse` that it imports (found from its
import statements, then kdcourse's own imports, transitively: a module added later comes along by
itself), the data splits with their card, `configs/`, the requirements, a student README and a
Jupyter configuration that hides nbgrader's instructor tools. Nothing of solutions/, of the hidden
suites or of the reference run is copied: only the files listed here are.

The student wheel (for a JupyterHub image) is kdcourse reduced to the same modules, with the data
splits and the profiles inside the package (setup.py's build step): not `kdcourse.distributed`,
whose training loop would answer `train_student`, nor the benchmarks.
"""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kdcourse.cli import parse_config
from kdcourse.errors import run_cli
from kdcourse.notebook import cell_source, read_notebook
from kdcourse.paths import DIST_DIR, RELEASE_NOTEBOOK, REPO_ROOT

PACKAGE = "kdcourse"
KIT_FOLDER = "student"
ZIP_NAME = "week6-student.zip"
ZIP_ROOT = "week6-student"  # the folder the zip unpacks to
MARKER = ".student-kit.json"  # written last: names every file, and marks the folder as ours
DATA_FILES = ["data/README.md", "data/cfpb/labels.json", "data/cfpb/*.parquet"]  # not data/raw
ENV_FILES = ["requirements.txt", "environment.yml"]
WHEEL_INPUTS = ["pyproject.toml", "setup.py", "data/cfpb/labels.json", "data/cfpb/*.parquet",
                "configs/profiles.toml"]  # besides the modules: what setup.py bundles
# nbgrader's instructor tools, off for students as nbgrader's installation docs describe; the
# student tools (assignment-list, validate-assignment) stay on.
INSTRUCTOR_LAB_EXTENSIONS = ["@jupyter/nbgrader:formgrader", "@jupyter/nbgrader:create-assignment",
                             "@jupyter/nbgrader:course-list"]
INSTRUCTOR_SERVER_EXTENSIONS = ["nbgrader.server_extensions.formgrader",
                                "nbgrader.server_extensions.course_list"]
# Modules that hold a training or inference loop (a Part C or Part D answer) and serve the course
# staff only: never shipped, even where a kit module imports them lazily (teacher.py's --folds).
STAFF_ONLY = ("kdcourse.distributed", "kdcourse.oof_train")
JUPYTER_DIR = ".jupyter"  # used through JUPYTER_CONFIG_DIR in the README's command

STUDENT_README = """\
# Week 6: Knowledge distillation (student kit)

Your assignment is `distillation.ipynb`. Everything it needs is in this folder: the course package
`kdcourse/` (data loading, models, metrics, plots), the complaint data in `data/` (its card is
`data/README.md`) and the model profiles in `configs/profiles.toml`.

With Python 3.11 on Linux or macOS (about 3 minutes and 2 GB the first time):

```bash
python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt    # set up, once
JUPYTER_CONFIG_DIR=.jupyter .venv/bin/jupyter lab distillation.ipynb     # open the notebook
```

(With conda: `conda env create -f environment.yml && conda activate week6-kd`, then
`JUPYTER_CONFIG_DIR=.jupyter jupyter lab distillation.ipynb`.) Run both commands in this folder:
the notebook finds `kdcourse` beside it.

- Replace each `raise NotImplementedError()` with your code; keep the name, signature and docstring.
  Each function is followed by a test cell that passes silently or says what is wrong; hidden tests
  check more cases when you submit. The experiment cells stop with `implement ... first` until the
  functions they need are written.
- The `parameters` cell picks the profile: `cpu` (default, tiny models built here, 2 CPU cores) or
  `gpu` (ModernBERT-large -> ModernBERT-base, one GPU). The first run fine-tunes the teacher once
  (`checkpoints/`) and caches its soft labels (`.cache/`). Where the notebook says `make teacher`,
  the kit's command is `.venv/bin/python -m kdcourse.teacher --profile cpu`.
- On the `gpu` profile, do not fine-tune the 395M teacher yourself: load the one your course
  publishes. Write `my_profiles.toml` with `[course]`, `extends = "gpu"` and
  `teacher_checkpoint = "<the hub id or folder your course gives>"`, start Jupyter with
  `KD_PROFILES=my_profiles.toml` in front, and set `PROFILE = "course"`. The teacher is checked
  against your labels, data and tokenizer, and any difference is named.
- The Validate button in the notebook's toolbar runs every test cell, as the grader will.

**How to submit.** Kernel -> Restart & Run All, check that no cell fails and every question is
answered, save, and hand in `distillation.ipynb` alone, the way your course collects assignments
(its submission page, or the Assignments tab on the course's JupyterHub). Only the notebook is graded:
do not rename it or its graded cells.
"""


@dataclass(frozen=True)
class StudentKit:
    """What `build_kit` wrote: the folder, the zip of the same tree, and the files in it."""
    folder: Path
    zip_path: Path
    modules: tuple[str, ...]  # e.g. ("kdcourse", "kdcourse.data", ...)
    files: tuple[str, ...]  # paths relative to `folder`, sorted

    def to_json(self) -> dict:
        return {**asdict(self), "folder": str(self.folder), "zip_path": str(self.zip_path)}


def notebook_imports(notebook: Path) -> set[str]:
    """Every module name the notebook's code cells import (`import a.b`, `from a.b import c`)."""
    names = set()
    for index, cell in enumerate(read_notebook(notebook)["cells"]):
        if cell.get("cell_type") != "code":
            continue
        # IPython magics and shell lines are not Python: blank them, keeping line numbers.
        lines = ["" if line.lstrip().startswith(("%", "!")) else line
                 for line in cell_source(cell).splitlines()]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError as err:
            raise ValueError(f"{notebook}: code cell {index} does not parse ({err}); fix it in the "
                             "solution notebook and run `make release`") from err
        names |= imported_names(tree, package=None)
    return names


def imported_names(tree: ast.AST, package: str | None) -> set[str]:
    """Module names imported anywhere in `tree` (lazy imports inside functions too). `package`
    resolves relative imports; for `from p import x`, both `p` and `p.x` are returned (x may be a
    module), and `module_file` later keeps only the names that are files."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = (package or "").split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def module_file(name: str, source_root: Path) -> Path | None:
    """The file of module `name` under `source_root` (the folder that holds kdcourse/), or None."""
    path = source_root.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_closure(roots: set[str], source_root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """{module: file} of the `package` modules in `roots` and of every package module they import,
    transitively, plus the packages that contain them (their __init__.py runs on import)."""
    found: dict[str, Path] = {}
    todo = sorted(name for name in roots if name == package or name.startswith(package + "."))
    while todo:
        name = todo.pop()
        path = module_file(name, source_root)
        if name in found or path is None or name in STAFF_ONLY:
            continue
        found[name] = path
        parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = imported_names(tree, package=name if is_package else name.rpartition(".")[0])
        todo += sorted(n for n in (parents | imports) - set(found)
                       if n == package or n.startswith(package + "."))
    return dict(sorted(found.items()))


def jupyter_config() -> dict[str, dict]:
    """{relative path: JSON} of the kit's Jupyter config folder: the same files that
    `jupyter labextension disable X` and `jupyter server extension disable Y` write there
    (JupyterLab 4.1+ also locks what it disables, so the plugin manager cannot turn it back on)."""
    return {
        "labconfig/page_config.json": {
            "disabledExtensions": {name: True for name in INSTRUCTOR_LAB_EXTENSIONS},
            "lockedExtensions": {name: True for name in INSTRUCTOR_LAB_EXTENSIONS}},
        "jupyter_server_config.json": {
            "ServerApp": {"jpserver_extensions": {name: False for name in INSTRUCTOR_SERVER_EXTENSIONS}}},
    }


def _copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)


def _kit_env_file(source: Path) -> str:
    """requirements.txt / environment.yml with the checkout's header comment replaced: the package
    lines stay byte for byte, but `make` and `pip install -e .` do not exist in the kit."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    how = ("python3.11 -m venv .venv && .venv/bin/pip install -r requirements.txt"
           if source.suffix == ".txt" else "conda env create -f environment.yml && conda activate week6-kd")
    return f"# Environment of the Week-6 student kit (see README.md): {how}\n" + "".join(lines)


def write_tree(kit: Path, repo_root: Path = REPO_ROOT, notebook: Path = RELEASE_NOTEBOOK) -> dict[str, Path]:
    """Write the kit's files into the empty folder `kit`; returns the kdcourse modules copied."""
    source_root = repo_root / "src"
    modules = package_closure(notebook_imports(notebook) | {PACKAGE}, source_root)
    _copy(notebook, kit / notebook.name)
    for path in modules.values():
        _copy(path, kit / path.relative_to(source_root))
    for pattern in DATA_FILES:
        files = sorted(repo_root.glob(pattern))
        if not files:
            raise FileNotFoundError(f"{repo_root / pattern} is missing: run `make data` first")
        for path in files:
            _copy(path, kit / path.relative_to(repo_root))
    for path in sorted((repo_root / "configs").rglob("*")):
        if path.is_file():
            _copy(path, kit / path.relative_to(repo_root))
    for name in ENV_FILES:
        (kit / name).write_text(_kit_env_file(repo_root / name), encoding="utf-8")
    (kit / "README.md").write_text(STUDENT_README, encoding="utf-8")
    for relative, content in jupyter_config().items():
        (kit / JUPYTER_DIR / relative).parent.mkdir(parents=True, exist_ok=True)
        (kit / JUPYTER_DIR / relative).write_text(json.dumps(content, indent=2) + "\n")
    return modules


def build_kit(out_dir: Path, repo_root: Path = REPO_ROOT, notebook: Path = RELEASE_NOTEBOOK) -> StudentKit:
    """Build out_dir/student/ and out_dir/week6-student.zip, replacing an earlier kit there.

    The tree is written to a temporary folder first, so a failed build leaves the earlier kit as
    it was. A folder out_dir/student that this builder did not write is refused, not replaced."""
    out_dir = Path(out_dir)
    folder, zip_path = out_dir / KIT_FOLDER, out_dir / ZIP_NAME
    if folder.exists() and not (folder / MARKER).is_file():
        raise FileExistsError(f"{folder} exists and is not a student kit (no {MARKER}): move it "
                              "away or pick another --out_dir")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".student-kit-", dir=out_dir))
    try:
        modules = write_tree(staging, repo_root, notebook)
        files = tuple(sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()))
        (staging / MARKER).write_text(json.dumps({"modules": sorted(modules), "files": files}, indent=1))
        files = tuple(sorted(files + (MARKER,)))
        temp_zip = staging.with_suffix(".zip")
        with zipfile.ZipFile(temp_zip, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in files:
                archive.write(staging / name, f"{ZIP_ROOT}/{name}")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
        temp_zip.replace(zip_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        staging.with_suffix(".zip").unlink(missing_ok=True)
    return StudentKit(folder, zip_path, tuple(modules), files)


def build_wheel(out_dir: Path, repo_root: Path = REPO_ROOT, notebook: Path = RELEASE_NOTEBOOK) -> Path:
    """Build out_dir/kdcourse-<version>-py3-none-any.whl from a copy of the sources that holds
    only the kit's modules (offline: no build isolation, no index). Returns the wheel's path."""
    source_root = repo_root / "src"
    modules = package_closure(notebook_imports(notebook) | {PACKAGE}, source_root)
    with tempfile.TemporaryDirectory(prefix="student-wheel-") as tmp:
        tree, wheels = Path(tmp) / "tree", Path(tmp) / "wheels"
        for path in modules.values():
            _copy(path, tree / path.relative_to(repo_root))
        for pattern in WHEEL_INPUTS:
            for path in sorted(repo_root.glob(pattern)):
                _copy(path, tree / path.relative_to(repo_root))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                               "--no-index", "--disable-pip-version-check", "-w", str(wheels), str(tree)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip wheel failed (is setuptools in {sys.prefix}?):\n{done.stderr[-3000:]}")
        (built,) = wheels.glob("kdcourse-*.whl")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        return Path(shutil.move(str(built), Path(out_dir) / built.name))


@dataclass
class StudentKitConfig:
    """`python -m autograder.student_kit [--out_dir dist] [--wheel false]`."""
    out_dir: Path = field(default=DIST_DIR, metadata={
        "help": "folder that receives student/, week6-student.zip and the wheel"})
    wheel: bool = field(default=True, metadata={"help": "also build the student wheel of kdcourse (true/false)"})


def main(argv=None) -> StudentKit:
    (cfg,) = parse_config(StudentKitConfig, argv, description=__doc__.split("\n\n")[0],
                          prog="autograder.student_kit")
    kit = build_kit(cfg.out_dir)
    print(f"student kit: {kit.folder}/ ({len(kit.files)} files; kdcourse modules: "
          f"{', '.join(m.removeprefix(PACKAGE + '.') for m in kit.modules if m != PACKAGE)})")
    print(f"zip: {kit.zip_path} ({kit.zip_path.stat().st_size / 1e6:.1f} MB)")
    if cfg.wheel:
        wheel = build_wheel(cfg.out_dir)
        print(f"wheel: {wheel} ({wheel.stat().st_size / 1e6:.1f} MB): pip install it in a JupyterHub image")
    return kit


if __name__ == "__main__":
    run_cli(main)
