"""The FLOP model of the benchmarks and the cards' dense bf16 peaks, shared by `bench` and `traffic`.

MFU counts training FLOPs per token as 6N (N: parameters outside the token embedding) plus the
attention term 12 * layers' d_model * context (context: the text's length on global layers, at most
the window on local ones), against the card's dense bf16 peak.

    flops = SequenceFlops(config, non_embedding_params(model))   # training: forward + backward
    flops(180)                                                   # FLOPs of one 180-token text
    card, peak = peak_flops("cuda")                              # ("NVIDIA H200", 989e12)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s), by a name fragment.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12,
             "L40S": 362e12, "L4": 121e12, "A10G": 70e12}


def peak_flops(device: str) -> tuple[str, float | None]:
    """(device name, dense bf16 peak FLOP/s or None when unknown, e.g. a CPU)."""
    if not device.startswith("cuda"):
        return "cpu", None
    name = torch.cuda.get_device_name(torch.device(device))
    for fragment, peak in PEAK_BF16.items():  # "H100 PCIe" before "H100"
        if fragment in name:
            return name, peak
    return name, None


def non_embedding_params(model) -> int:
    """Parameters that multiply activations (the token-embedding lookup does not)."""
    return sum(p.numel() for name, p in model.named_parameters() if "tok_embeddings" not in name)


def flops_per_sequence(config, n_params: int, length: int, training: bool = True) -> float:
    """Model FLOPs of one sequence of `length` tokens: 2N per token forward (x3 with backward),
    plus attention scores and values, 4 * d_model * context per token and layer (x3 with backward);
    the context is the whole text on global layers and at most the window on local layers."""
    global_every = config.global_attn_every_n_layers
    window = config.local_attention + 1  # ModernBERT's local layers see +-local_attention/2 tokens
    context = sum(length if layer % global_every == 0 else min(length, window)
                  for layer in range(config.num_hidden_layers))
    factor = 3 if training else 1
    return factor * length * (2 * n_params + 4 * config.hidden_size * context)


@dataclass(frozen=True)
class SequenceFlops:
    """One model's FLOPs per text: `flops(length)` is `flops_per_sequence` for that model."""
    config: Any  # the model's ModernBertConfig (layers, hidden size, local window)
    n_params: int  # non_embedding_params(model)
    training: bool = True  # forward + backward (x3), or forward only (inference)

    def __call__(self, length: int) -> float:
        return flops_per_sequence(self.config, self.n_params, length, self.training)
