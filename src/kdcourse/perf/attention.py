"""Unpadded FlashAttention for ModernBERT without the `flash_attn` package.

transformers runs ModernBERT on padded `[batch, seq]` inputs. With SDPA every layer then gets a dense
`[batch, 1, seq, seq]` mask (a padding mask on global layers, a +-64-token band on local ones), which
rules out SDPA's flash kernel and leaves the slower masked ones. PyTorch (2.9+) ships FlashAttention-2
for variable-length batches as `torch.nn.attention.varlen.varlen_attn`, with sliding windows; this
module registers it with transformers as the attention implementation `"kd_varlen"`:

    from kdcourse.perf.attention import register, VARLEN
    register()
    model = AutoModelForSequenceClassification.from_pretrained(name, attn_implementation=VARLEN)

Each layer gathers the real tokens of q, k and v (`[batch, heads, seq, dim]` -> `[tokens, heads, dim]`),
runs the kernel with the sequences' boundaries, and scatters the result back. Eager, the gather indices
are computed once per forward (one host sync) and shared by all layers; under torch.compile each layer
sorts the positions instead (fixed shapes, no sync, so the layer stays one graph).

On length-grouped batches (little padding) it is slower than SDPA in eager mode (the extra gathers add
kernel launches to a launch-bound step; figures in docs/benchmarks.md), so
`kdcourse.models.attention_implementation` does not pick it by itself.
"""
from __future__ import annotations

import functools
import inspect
import weakref

import torch
import torch.nn.functional as F

VARLEN = "kd_varlen"


@functools.cache
def torch_varlen_kernel():
    """`varlen_attn` when this torch has it with sliding windows, else None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn if "window_size" in inspect.signature(varlen_attn).parameters else None


def varlen_available(device: str | torch.device | None = None) -> bool:
    """True where `"kd_varlen"` runs: a CUDA device of compute capability 8.0+ (FlashAttention-2)."""
    if torch_varlen_kernel() is None or not torch.cuda.is_available():
        return False
    device = torch.device(device or "cuda")
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


@torch.compiler.disable  # a Python loop over sequences: never worth tracing
def reference_varlen_kernel(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None,
                            window_size=(-1, -1), **unused):
    """The same contract as `varlen_attn`, one SDPA call per sequence: for CPUs and tests.
    query/key/value: [tokens, heads, head_dim]; cu_seq_*: [sequences + 1] int32 offsets."""
    out = torch.empty_like(query)
    bounds = cu_seq_q.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:  # zero-length sequences pad a packed batch's boundaries
            continue
        q, k, v = (x[start:end].transpose(0, 1) for x in (query, key, value))  # [heads, n, dim]
        mask = None
        if window_size != (-1, -1):
            pos = torch.arange(end - start, device=query.device)
            offset = pos[None, :] - pos[:, None]  # key minus query position
            mask = (offset >= -window_size[0]) & (offset <= window_size[1])
        out[start:end] = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale).transpose(0, 1)
    return out


def _lengths_and_offsets(attention_mask: torch.Tensor):
    """(mask [batch, seq] bool, lengths [batch] int32, cu_seqlens [batch + 1] int32) of a 2D mask."""
    mask = attention_mask.bool()
    lengths = mask.sum(dim=1, dtype=torch.int32)
    return mask, lengths, F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))


_last_unpad: list = [None, None, None]  # [weakref to the 2D mask, (indices, cu_seqlens, max_len), key]


def unpad_metadata(attention_mask: torch.Tensor | None, batch: int, seq: int, device):
    """(indices [tokens] into the flattened [batch * seq] positions, cu_seqlens [batch + 1] int32,
    longest sequence) of a 2D mask [batch, seq] (True/1 = token) or of None (no padding).
    Cached on the mask object, so all layers of a forward share one computation; a mask made in
    inference mode has no version counter to reveal in-place edits, so each layer computes its own."""
    if attention_mask is None:
        cu = torch.arange(0, (batch + 1) * seq, seq, dtype=torch.int32, device=device)
        return None, cu, seq
    if attention_mask.is_inference():
        return _gather_metadata(attention_mask)
    base = attention_mask if attention_mask._base is None else attention_mask._base
    key = (base.shape == attention_mask.shape, base._version)  # _version: in-place edits of the mask
    if _last_unpad[0] is not None and _last_unpad[0]() is base and _last_unpad[2] == key and key[0]:
        return _last_unpad[1]
    meta = _gather_metadata(attention_mask)
    _last_unpad[:] = [weakref.ref(base), meta, key]
    return meta


def _gather_metadata(attention_mask: torch.Tensor):
    mask, lengths, cu = _lengths_and_offsets(attention_mask)
    indices = mask.flatten().nonzero().squeeze(1)  # the one host sync: the token count
    return indices, cu, int(lengths.max())


def static_unpad_metadata(attention_mask: torch.Tensor, batch: int, seq: int):
    """The same unpadding with fixed shapes and no host sync, for torch.compile and CUDA graphs:
    (order [batch * seq]: token positions first, in order, then padding; valid [batch * seq] bool,
    True on the first `tokens` rows of that order; cu_seqlens [batch + 1] int32)."""
    mask, _, cu = _lengths_and_offsets(attention_mask)
    order = torch.argsort((~mask.flatten()).to(torch.uint8), stable=True)
    valid = torch.arange(batch * seq, device=mask.device) < cu[-1]
    return order, valid, cu


def varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                     sliding_window=None, kernel=None, static: bool | None = None, **kwargs):
    """A transformers attention function. query/key/value: [batch, heads, seq, head_dim];
    attention_mask: [batch, seq] bool or None (what `flash_attention_mask` builds);
    sliding_window: ModernBERT's local layers pass half-window + 1, as for flash_attn.
    static: fixed-shape unpadding without a host sync (default: only while torch.compile traces).
    kwargs may carry `cu_seq_lens_q` [sequences + 1] and `max_length_q` for texts packed in one row.
    Returns ([batch, seq, heads, head_dim], None)."""
    if dropout:
        raise ValueError(f"{VARLEN} has no attention dropout; got dropout={dropout}. Set the config's "
                         "attention_dropout to 0 (the released ModernBERTs use 0) or use sdpa.")
    batch, heads, seq, dim = query.shape
    if kernel is None:
        kernel = torch_varlen_kernel() if query.is_cuda else reference_varlen_kernel
    if static is None:
        static = torch.compiler.is_compiling()
    valid = None
    if kwargs.get("cu_seq_lens_q") is not None:  # packed texts in one row (kdcourse.perf.packing)
        if batch != 1 or attention_mask is not None:
            raise ValueError("packed sequences (cu_seq_lens_q) come as one row without an attention mask")
        indices, cu, max_len = None, kwargs["cu_seq_lens_q"], kwargs.get("max_length_q") or seq
    elif attention_mask is not None and static:
        indices, valid, cu = static_unpad_metadata(attention_mask, batch, seq)
        max_len = seq  # an upper bound is enough for the kernel's grid
    else:
        indices, cu, max_len = unpad_metadata(attention_mask, batch, seq, query.device)
    dtype = query.dtype if query.dtype in (torch.float16, torch.bfloat16) or not query.is_cuda else torch.bfloat16

    def unpad(x):  # [batch, heads, seq, dim] -> [tokens, heads, dim] (static: [batch * seq, heads, dim])
        x = x.transpose(1, 2).reshape(batch * seq, heads, dim).to(dtype)
        x = x if indices is None else x.index_select(0, indices)
        # Static: rows past the last token belong to no sequence; zeroing them here also drops the
        # gradient rows the kernel leaves unwritten there.
        return x if valid is None else torch.where(valid[:, None, None], x, 0)

    window = (-1, -1)
    if sliding_window is not None and max_len > sliding_window:
        window = (sliding_window - 1, sliding_window - 1)  # the flash convention transformers uses
    out = kernel(unpad(query), unpad(key), unpad(value), cu, cu, max_len, max_len, scale=scaling,
                 window_size=window).to(query.dtype)
    if valid is not None:
        out = torch.where(valid[:, None, None], out, 0)  # the kernel does not write rows past the tokens
        out = torch.empty_like(out).index_copy(0, indices, out)  # `indices` is a permutation here
    elif indices is not None:
        out = out.new_zeros(batch * seq, heads, dim).index_copy(0, indices, out)
    return out.view(batch, seq, heads, dim), None


def register() -> str:
    """Make `"kd_varlen"` a transformers attention implementation (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
    AttentionInterface.register(VARLEN, varlen_attention)
    AttentionMaskInterface.register(VARLEN, flash_attention_mask)  # 2D mask, None without padding
    return VARLEN
