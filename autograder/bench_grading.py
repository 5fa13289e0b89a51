"""Benchmark: seconds to grade one submission, and 50 submissions with --jobs 2.

    python -m autograder.bench_grading [--n 50] [--jobs 2]

Prints wall and CPU seconds (this process and its children: the pytest session and the
sandboxed workers) and the load average, since a shared machine inflates wall times.
"""
import dataclasses
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from autograder import MAX_POINTS
from autograder.grade import grade_folder, grade_notebook
from kdcourse.cli import parse_config
from kdcourse.errors import run_cli
from kdcourse.paths import SOLUTION_NOTEBOOK


@dataclasses.dataclass
class BenchGradingConfig:
    n: int = dataclasses.field(default=50, metadata={"help": "submissions in the batch run"})
    jobs: int = dataclasses.field(default=2, metadata={"help": "students graded in parallel"})


def cpu_seconds() -> float:
    """User + system seconds of this process and all its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv=None):
    (cfg,) = parse_config(BenchGradingConfig, argv, description=__doc__.split("\n\n")[0],
                          prog="autograder.bench_grading")
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, notebook: {SOLUTION_NOTEBOOK}")
    start, cpu = time.perf_counter(), cpu_seconds()
    total = grade_notebook(SOLUTION_NOTEBOOK).total
    print(f"one submission: {time.perf_counter() - start:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU "
          f"(score {total})")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(cfg.n):
            (Path(tmp) / "subs" / f"s{i:03d}").mkdir(parents=True)
            shutil.copy(SOLUTION_NOTEBOOK, Path(tmp) / "subs" / f"s{i:03d}" / "distillation.ipynb")
        start, cpu = time.perf_counter(), cpu_seconds()
        grades = grade_folder(Path(tmp) / "subs", Path(tmp) / "out", jobs=cfg.jobs, progress=False)
        elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu
    automatic = sum(MAX_POINTS.values())           # the written answers are not marked here
    full = sum(g.total == automatic for g in grades.values())
    print(f"{cfg.n} submissions, jobs={cfg.jobs}: {elapsed:.0f} s wall ({elapsed / cfg.n:.1f} s "
          f"each), {used:.0f} s CPU ({used / cfg.n:.1f} s each); {full}/{cfg.n} scored {automatic}; "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    run_cli(main)
