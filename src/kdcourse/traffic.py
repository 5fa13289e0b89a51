"""Moved to `kdcourse.perf.traffic` (its kernel
recorder to `kdcourse.perf.inductor_bytes`); this path still works for a while, with a deprecation
message."""
from kdcourse.perf._old_paths import forward

forward(globals(), "kdcourse.traffic", ("kdcourse.perf.traffic", "kdcourse.perf.inductor_bytes"))
