"""`kd_varlen` attention: the same outputs and gradients as SDPA, on padded batches and local windows.

On CPU the unpadding and window logic run with `reference_varlen_kernel`; the `gpu` tests compare
PyTorch's FlashAttention varlen kernel itself (bf16) with SDPA and are skipped without CUDA.
"""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from kdcourse.models import attention_implementation
from kdcourse.perf import attention

from tiny_modernbert import base_width_config, padded_batch, small_config  # tests/support, on pytest's pythonpath

needs_cuda = pytest.mark.skipif(not attention.varlen_available(), reason="needs a CUDA GPU and torch varlen_attn")


def logits_and_grad(config, implementation, ids, mask, device="cpu", dtype=None, **kwargs):
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation=implementation).to(device)
    with torch.autocast(torch.device(device).type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs).logits
    logits.float().square().sum().backward()
    return logits.detach().float().cpu(), model.model.layers[0].attn.Wqkv.weight.grad.float().cpu()


@pytest.mark.parametrize("static", [False, True], ids=["gather", "static"])
@pytest.mark.parametrize("lengths", [[40, 25, 7], [40, 40, 40], [9]], ids=["padded", "no-padding", "one"])
def test_varlen_matches_sdpa_on_cpu(lengths, static):
    """Windows of +-8 tokens on 40-token texts, global layers between: logits and gradients agree,
    with the eager unpadding (gather, one sync) and the fixed-shape one used under torch.compile."""
    attention.register()
    ids, mask = padded_batch(lengths, 40)
    ref_logits, ref_grad = logits_and_grad(small_config(), "sdpa", ids, mask)
    logits, grad = logits_and_grad(small_config(), attention.VARLEN, ids, mask, static=static)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, ref_grad, atol=1e-6, rtol=1e-4)


def test_varlen_runs_in_inference_mode():
    """The soft-label pass runs under torch.inference_mode, whose masks have no version counter: no
    cache then, the same logits as SDPA."""
    attention.register()
    ids, mask = padded_batch([40, 25, 7], 40)
    logits = {}
    for implementation in ("sdpa", attention.VARLEN):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(small_config(), attn_implementation=implementation)
        with torch.inference_mode():
            logits[implementation] = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits[attention.VARLEN], logits["sdpa"], atol=1e-5, rtol=1e-4)


def test_window_changes_the_result():
    """The local window is applied: the same model with a whole-text window differs."""
    attention.register()
    ids, mask = padded_batch([40, 30], 40)
    narrow, _ = logits_and_grad(small_config(), attention.VARLEN, ids, mask)
    wide, _ = logits_and_grad(small_config(local_attention=128), attention.VARLEN, ids, mask)
    assert (narrow - wide).abs().max() > 1e-4


def test_unpad_metadata_offsets_and_cache():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    indices, cu, longest = attention.unpad_metadata(mask, 2, 4, "cpu")
    assert indices.tolist() == [0, 1, 2, 4, 5] and cu.tolist() == [0, 3, 5] and longest == 3
    assert attention.unpad_metadata(mask[:, -4:], 2, 4, "cpu")[0] is indices  # shared across layers
    mask[1, 2] = True  # edited in place: not the cached answer
    assert attention.unpad_metadata(mask, 2, 4, "cpu")[1].tolist() == [0, 3, 6]
    other = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert attention.unpad_metadata(other, 2, 4, "cpu")[1].tolist() == [0, 1, 5]
    none_indices, cu, longest = attention.unpad_metadata(None, 2, 4, "cpu")
    assert none_indices is None and cu.tolist() == [0, 4, 8] and longest == 4


def test_static_unpad_metadata_is_a_permutation_with_tokens_first():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]], dtype=torch.bool)
    order, valid, cu = attention.static_unpad_metadata(mask, 2, 4)
    assert order.tolist() == [0, 1, 2, 4, 5, 3, 6, 7] and cu.tolist() == [0, 3, 5]
    assert valid.tolist() == [True] * 5 + [False] * 3


def test_dropout_is_refused_with_a_message():
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="attention_dropout"):
        attention.varlen_attention(None, q, q, q, None, dropout=0.1)


def test_flex_attention_matches_sdpa_forward_on_cpu():
    """transformers' FlexAttention path (the bench's `--attention flex_attention`): padding masks and
    +-8-token windows give SDPA's logits. Forward only: FlexAttention has no CPU backward, and on CPU
    it needs heads of 64 (ModernBERT's width); the gradient check is the `gpu` test below."""
    config = small_config(hidden_size=128, num_attention_heads=2, num_hidden_layers=2)  # a local, a global
    ids, mask = padded_batch([40, 25, 7], 40)
    logits = {}
    for implementation in ("sdpa", "flex_attention"):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation=implementation).eval()
        with torch.no_grad():
            logits[implementation] = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(logits["flex_attention"], logits["sdpa"], atol=1e-5, rtol=1e-4)


def test_cpu_falls_back_to_sdpa():
    if not torch.cuda.is_available():
        assert attention_implementation() == "sdpa"


@pytest.mark.gpu
@needs_cuda
def test_flash_varlen_kernel_matches_reference_kernel():
    """The CUDA kernel against the per-sequence SDPA reference, windows included (bf16)."""
    g = torch.Generator(device="cuda").manual_seed(0)
    lengths = [300, 129, 64, 1]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    q, k, v = (torch.randn(sum(lengths), 12, 64, device="cuda", generator=g, dtype=torch.bfloat16)
               for _ in range(3))
    for window in [(-1, -1), (64, 64)]:
        out = attention.torch_varlen_kernel()(q, k, v, cu, cu, max(lengths), max(lengths), scale=0.125,
                                              window_size=window)
        ref = attention.reference_varlen_kernel(q.double(), k.double(), v.double(), cu, cu, 0, 0,
                                                scale=0.125, window_size=window)
        assert ((out.double() - ref).norm() / ref.norm()).item() < 1e-2, window


@pytest.mark.gpu
@needs_cuda
def test_varlen_matches_sdpa_on_gpu_modernbert_base_width():
    """ModernBERT-base width and window (128), 4 layers, bf16 autocast, texts up to 512 tokens."""
    attention.register()
    config = base_width_config()
    ids, mask = padded_batch([512, 300, 129, 20], 512, vocab=50368)
    ref_logits, ref_grad = logits_and_grad(config, "sdpa", ids, mask, "cuda", torch.bfloat16)
    for static in (False, True):
        logits, grad = logits_and_grad(config, attention.VARLEN, ids, mask, "cuda", torch.bfloat16, static=static)
        assert ((logits - ref_logits).norm() / ref_logits.norm()).item() < 2e-2, static
        assert ((grad - ref_grad).norm() / ref_grad.norm()).item() < 5e-2, static


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_flex_attention_matches_sdpa_on_gpu_modernbert_base_width():
    """FlexAttention, logits and gradients, at ModernBERT-base width and window (bf16)."""
    config = base_width_config()
    ids, mask = padded_batch([512, 300, 129, 20], 512, vocab=50368)
    ref_logits, ref_grad = logits_and_grad(config, "sdpa", ids, mask, "cuda", torch.bfloat16)
    logits, grad = logits_and_grad(config, "flex_attention", ids, mask, "cuda", torch.bfloat16)
    assert ((logits - ref_logits).norm() / ref_logits.norm()).item() < 2e-2
    assert ((grad - ref_grad).norm() / ref_grad.norm()).item() < 5e-2
