"""Benchmark: seconds to grade one submission, and 50 submissions with --jobs 2.

    python autograder/bench_grading.py [--n 50] [--jobs 2]

Prints wall and CPU seconds (this process and its children: the pytest session and the
sandboxed workers) and the load average, since a shared machine inflates wall times.
"""
import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from autograder.grade import grade_folder, grade_notebook  # noqa: E402

SOLUTION = Path(__file__).resolve().parent.parent / "solutions/week6_distillation/distillation.ipynb"


def cpu_seconds() -> float:
    """User + system seconds of this process and all its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="submissions in the batch run")
    parser.add_argument("--jobs", type=int, default=2, help="students graded in parallel")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}, notebook: {SOLUTION}")
    start, cpu = time.perf_counter(), cpu_seconds()
    total = grade_notebook(SOLUTION)["total"]
    print(f"one submission: {time.perf_counter() - start:.1f} s wall, {cpu_seconds() - cpu:.1f} s CPU "
          f"(score {total})")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            (Path(tmp) / "subs" / f"s{i:03d}").mkdir(parents=True)
            shutil.copy(SOLUTION, Path(tmp) / "subs" / f"s{i:03d}" / "distillation.ipynb")
        start, cpu = time.perf_counter(), cpu_seconds()
        grades = grade_folder(Path(tmp) / "subs", Path(tmp) / "out", jobs=args.jobs, progress=False)
        elapsed, used = time.perf_counter() - start, cpu_seconds() - cpu
    full = sum(g["total"] == 60 for g in grades.values())
    print(f"{args.n} submissions, jobs={args.jobs}: {elapsed:.0f} s wall ({elapsed / args.n:.1f} s "
          f"each), {used:.0f} s CPU ({used / args.n:.1f} s each); {full}/{args.n} scored 60; "
          f"load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
