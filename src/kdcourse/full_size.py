"""Moved to `kdcourse.perf.full_size`; this path still works for a while, with a deprecation message."""
from kdcourse.perf._old_paths import forward

forward(globals(), "kdcourse.full_size", ("kdcourse.perf.full_size",))
