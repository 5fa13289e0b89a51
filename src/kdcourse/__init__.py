"""Shared code of the Week-6 knowledge-distillation assignment.

Modules: `data` (splits, tokenization, batching), `profiles` (model profiles), `models` (tokenizers,
models, size and speed), `metrics` (evaluation), `plots`, `logits_cache`, `notebook` (graded cells),
`teacher` (fine-tuning the teacher), `utils` (seeding, device).
"""
__version__ = "0.1.0"
