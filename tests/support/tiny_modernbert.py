"""Small ModernBERT configs and padded batches for the attention and packing tests."""
import torch
from transformers import ModernBertConfig


def small_config(**overrides):
    values = dict(vocab_size=300, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                  intermediate_size=96, local_attention=16, global_attn_every_n_layers=2, pad_token_id=0,
                  bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
                  classifier_pooling="mean", num_labels=5, max_position_embeddings=512)
    return ModernBertConfig(**(values | overrides))


def base_width_config():
    """ModernBERT-base's vocabulary, width, heads and local window (128), in 4 layers: the GPU tests."""
    return small_config(vocab_size=50368, hidden_size=768, num_attention_heads=12, intermediate_size=1152,
                        local_attention=128, global_attn_every_n_layers=3)


def padded_batch(lengths, seq, vocab=300, seed=1):
    """input_ids [batch, seq] and attention_mask [batch, seq], right-padded to `seq`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (len(lengths), seq), generator=g)
    mask = (torch.arange(seq)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask
