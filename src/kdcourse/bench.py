"""Moved to `kdcourse.perf.bench` (its parts to `rows`, `report`, `flops` and `workload` there); this
path still works for a while, with a deprecation message."""
from kdcourse.perf._old_paths import forward

forward(globals(), "kdcourse.bench", ("kdcourse.perf.bench", "kdcourse.perf.rows", "kdcourse.perf.report",
                                      "kdcourse.perf.flops", "kdcourse.perf.workload"))
