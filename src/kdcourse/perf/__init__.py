"""The TA performance machinery: what the course staff run to measure the reference step on a GPU.

Nothing here is part of the assignment; the notebook and the grader do not import it (except the
opt-in `kd_varlen` attention that `kdcourse.models.resolve_attention` registers on request).

| module | what |
|---|---|
| `bench` | `make bench`: its config, the run's orchestration and `main` |
| `rows` | the four measurements: reference step, packed step, soft-label pass, Trainer baseline |
| `report` | the ratios between rows and the printed table |
| `flops` | the FLOP model and the cards' dense bf16 peaks (shared by `bench` and `traffic`) |
| `workload` | random-weight models at a profile's shapes and random CFPB-like examples |
| `traffic` | `make traffic`: bytes the compiled step's kernels move, and the MFU ceiling that leaves |
| `inductor_bytes` | what `traffic` records: each kernel Inductor generates, with the bytes it moves |
| `profiling` | step timing with GPU syncs, peak memory, GPU time by kernel class |
| `packing` | texts packed into rows of N tokens, per-text pooling (a bench option) |
| `attention` | `kd_varlen`: PyTorch's varlen FlashAttention as a transformers attention |
| `master_weights` | `MasterWeights`: bf16 weights in the model, fp32 master copies in the optimizer |
| `full_size` | `make full-size`: the reference pipeline at the released shapes, stage by stage |

Figures these tools measured, with date, hardware and command: docs/benchmarks.md.
"""
