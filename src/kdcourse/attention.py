"""Moved to `kdcourse.perf.attention`; this path still works for a while, with a deprecation message."""
from kdcourse.perf._old_paths import forward

forward(globals(), "kdcourse.attention", ("kdcourse.perf.attention",))
