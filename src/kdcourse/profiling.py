"""Moved to `kdcourse.perf.profiling`; this path still works for a while, with a deprecation message."""
from kdcourse.perf._old_paths import forward

forward(globals(), "kdcourse.profiling", ("kdcourse.perf.profiling",))
