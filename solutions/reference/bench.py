"""Deprecated: `make bench` and `python -m kdcourse.perf.bench` run the benchmark. This path still
works for a while: it says so on stderr and runs `kdcourse.perf.bench` with the same arguments."""
import sys

from kdcourse.errors import run_cli
from kdcourse.perf.bench import main

if __name__ == "__main__":
    print("warning: solutions/reference/bench.py is deprecated, use `python -m kdcourse.perf.bench` "
          "(or make bench)", file=sys.stderr)
    run_cli(main)
