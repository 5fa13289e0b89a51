"""Bytes each kernel moves, as Inductor's scheduler counts them while it compiles (what `traffic`
measures). This reads torch internals (`GraphLowering.codegen`, scheduler nodes'
`get_read_write_buffers_sizes`): it is the one place that does, and it checks they exist first.

    with record_kernels() as kernels:
        torch.compile(fn)(x)
    totals(kernels)        # {"fused": {"kernels": 1, "bytes": 8000}}
"""
from __future__ import annotations

import contextlib
from unittest import mock

import torch


@contextlib.contextmanager
def record_kernels():
    """Yields a list that fills with (kind, bytes read and written) for every kernel Inductor generates
    inside the block, kind in {"fused", "extern", "template"}. Compilation only: cached graphs (the
    FX graph cache, or a graph Dynamo already compiled) are not lowered again, so nothing is recorded
    for them; the caches are switched off inside the block."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config
    from torch._inductor.graph import GraphLowering

    from torch._inductor.scheduler import BaseSchedulerNode
    if not (hasattr(GraphLowering, "codegen") and hasattr(BaseSchedulerNode, "get_read_write_buffers_sizes")):
        raise RuntimeError(f"kdcourse.perf.traffic reads Inductor internals (GraphLowering.codegen, scheduler nodes' "
                           f"get_read_write_buffers_sizes) that torch {torch.__version__} does not have; "
                           "use the torch pinned in requirements.txt")
    kernels: list[tuple[str, int]] = []
    codegen = GraphLowering.codegen

    def recording_codegen(graph, *args, **kwargs):
        result = codegen(graph, *args, **kwargs)
        for node in graph.scheduler.nodes:
            size = node.get_read_write_buffers_sizes()
            if size:  # views and multi-output unpacking are nodes, not kernels, and move nothing
                kind = "extern" if node.is_extern() else "template" if node.is_template() else "fused"
                kernels.append((kind, size))
        return result

    with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False), \
            mock.patch.object(GraphLowering, "codegen", recording_codegen):
        yield kernels


def totals(kernels: list[tuple[str, int]]) -> dict:
    """{kind: {"kernels": count, "bytes": sum}} of `record_kernels`' list."""
    out: dict = {}
    for kind, size in kernels:
        row = out.setdefault(kind, {"kernels": 0, "bytes": 0})
        row["kernels"] += 1
        row["bytes"] += size
    return out
