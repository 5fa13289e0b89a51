"""Benchmark: seconds to grade one submission, and 50 submissions with --jobs 2.

    python autograder/bench_grading.py [--n 50] [--jobs 2]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from autograder.grade import grade_folder, grade_notebook  # noqa: E402

SOLUTION = Path(__file__).resolve().parent.parent / "solutions/week6_distillation/distillation.ipynb"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50, help="submissions in the batch run")
    parser.add_argument("--jobs", type=int, default=2, help="students graded in parallel")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, notebook: {SOLUTION}")
    start = time.perf_counter()
    total = grade_notebook(SOLUTION)["total"]
    print(f"one submission: {time.perf_counter() - start:.1f} s (score {total})")
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            (Path(tmp) / "subs" / f"s{i:03d}").mkdir(parents=True)
            shutil.copy(SOLUTION, Path(tmp) / "subs" / f"s{i:03d}" / "distillation.ipynb")
        start = time.perf_counter()
        grade_folder(Path(tmp) / "subs", Path(tmp) / "out", jobs=args.jobs)
        elapsed = time.perf_counter() - start
    print(f"{args.n} submissions, jobs={args.jobs}: {elapsed:.0f} s ({elapsed / args.n:.1f} s each)")


if __name__ == "__main__":
    main()
