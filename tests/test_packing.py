"""Sequence packing: the packed row gives each text the logits and gradients of a padded batch."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from kdcourse.perf import attention
from kdcourse.perf.packing import PackedCollator, pack_by_length, packed_logits
from kdcourse.utils import to_device

from tiny_modernbert import base_width_config, padded_batch, small_config  # tests/support, on pytest's pythonpath


def test_first_fit_decreasing_fills_packs_and_keeps_every_text():
    lengths = [50, 10, 40, 30, 60, 20, 5]
    packs = pack_by_length(lengths, budget=64)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in p) <= 64 for p in packs)
    assert len(packs) == 4  # 215 tokens need at least 4 packs of 64
    with pytest.raises(ValueError, match="does not fit"):
        pack_by_length([65], budget=64)


def test_a_cap_on_texts_per_pack_keeps_every_text_and_shortens_cu_seqlens():
    """With max_texts no pack holds more texts; the collator's boundaries shrink to the cap plus the tail's."""
    lengths = [8] * 20 + [30, 20]
    packs = pack_by_length(lengths, budget=64, max_texts=5)
    assert sorted(i for p in packs for i in p) == list(range(len(lengths)))
    assert max(len(p) for p in packs) == 5 and all(sum(lengths[i] for i in p) <= 64 for p in packs)
    assert max(len(p) for p in pack_by_length(lengths, budget=64)) == 8  # uncapped: 8 texts of 8 tokens
    collate = PackedCollator(0, budget=64, max_length=32, max_texts=5)
    assert collate.max_sequences == 5 + 2 + 1 and PackedCollator(0, 64, 32).max_sequences == 8 + 2 + 1
    batch = collate([{"input_ids": [5] * lengths[i], "label": 0} for i in packs[0]])
    assert batch["cu_seqlens"].shape == (collate.max_sequences + 1,) and batch["cu_seqlens"][-1] == 64
    with pytest.raises(ValueError, match="at most 5 texts"):
        collate([{"input_ids": [5] * 8, "label": 0}] * 6)
    with pytest.raises(ValueError, match="max_texts must be >= 1"):
        pack_by_length(lengths, 64, max_texts=0)


def test_collator_layout():
    """Texts, then the padding tail in sequences of at most max_length, then zero-length sequences."""
    collate = PackedCollator(pad_token_id=0, budget=16, max_length=4)
    batch = collate([{"input_ids": [5, 6, 7], "label": 1}, {"input_ids": [8, 9], "label": 0}])
    assert batch["input_ids"].tolist() == [5, 6, 7, 8, 9] + [0] * 11
    assert batch["position_ids"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2]
    assert batch["doc_ids"].tolist() == [0, 0, 0, 1, 1] + [2] * 11
    assert batch["cu_seqlens"].tolist() == [0, 3, 5, 9, 13, 16] + [16] * (collate.max_sequences - 5)
    assert batch["max_length"] == 4 and batch["labels"].tolist() == [1, 0]
    assert batch["lengths"].tolist() == [3, 2]
    with pytest.raises(ValueError, match="do not fit"):
        collate([{"input_ids": [5] * 5, "label": 0}])


@pytest.mark.parametrize("budget", [128, 97], ids=["tail", "no-tail"])
def test_packed_logits_and_gradients_match_the_padded_batch(budget):
    """Local windows of +-8 tokens and global layers, texts of 40, 25, 7 and 25 tokens."""
    attention.register()
    lengths = [40, 25, 7, 25]
    ids, mask = padded_batch(lengths, 40)
    grads, outputs = [], []
    for packed in (False, True):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(small_config(), attn_implementation=attention.VARLEN)
        if packed:
            items = [{"input_ids": ids[i, :n].tolist(), "label": 0} for i, n in enumerate(lengths)]
            logits = packed_logits(model, PackedCollator(0, budget, max_length=40)(items))
        else:
            logits = model(input_ids=ids, attention_mask=mask).logits
        logits.square().sum().backward()
        outputs.append(logits.detach())
        grads.append(model.model.layers[1].mlp.Wi.weight.grad)
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)


def test_packing_refuses_sdpa():
    model = AutoModelForSequenceClassification.from_config(small_config(), attn_implementation="sdpa")
    batch = PackedCollator(0, 16, max_length=8)([{"input_ids": [5, 6], "label": 0}])
    with pytest.raises(ValueError, match="attend across texts"):
        packed_logits(model, batch)


@pytest.mark.gpu
@pytest.mark.skipif(not attention.varlen_available(), reason="needs a CUDA GPU and torch varlen_attn")
def test_packed_matches_padded_sdpa_on_gpu():
    """The CUDA varlen kernel on a packed row (tail chunks, zero-length sequences), ModernBERT-base
    width and window, bf16: the padded SDPA model's logits and gradients."""
    attention.register()
    config = base_width_config()
    lengths = [512, 300, 129, 20]
    ids, mask = padded_batch(lengths, 512, vocab=50368)
    results = []
    for implementation in ("sdpa", attention.VARLEN):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation=implementation).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if implementation == "sdpa":
                logits = model(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits
            else:
                items = [{"input_ids": ids[i, :n].tolist(), "label": 0} for i, n in enumerate(lengths)]
                batch = PackedCollator(0, 2048, max_length=512)(items)
                logits = packed_logits(model, to_device(batch, "cuda"))
        logits.float().square().sum().backward()
        results.append((logits.detach().float(), model.model.layers[0].attn.Wqkv.weight.grad.float()))
    (ref_logits, ref_grad), (logits, grad) = results
    assert ((logits - ref_logits).norm() / ref_logits.norm()).item() < 2e-2
    assert ((grad - ref_grad).norm() / ref_grad.norm()).item() < 5e-2
