"""kdcourse.perf.master_weights.MasterWeights: bf16 weights in the model, fp32 updates in the optimizer."""
import io

import pytest
import torch

from kdcourse.perf.master_weights import MasterWeights


def model_and_copy():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    model.register_buffer("frequencies", torch.tensor([1.0 + 2**-12]))  # not representable in bf16
    reference = [p.detach().float().clone().requires_grad_() for p in model.parameters()]
    return model, reference


def seeded_grad(param, step):
    """The same fp32 gradient for a parameter's shape at every call with this step, on its device."""
    return torch.randn(param.shape, generator=torch.Generator().manual_seed(step)).to(param.device)


def test_the_model_turns_bf16_and_its_buffers_do_not():
    model, _ = model_and_copy()
    MasterWeights(model, lambda params: torch.optim.SGD(params, lr=0.1))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.frequencies.dtype == torch.float32 and model.frequencies.item() == 1.0 + 2**-12


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")])])
def test_a_step_is_the_fp32_optimizer_step_on_the_master_copies(device):
    """Same gradients: the master copies move exactly as fp32 AdamW moves fp32 weights (fused AdamW
    on CUDA, the training path on a GPU), the model holds them rounded to bf16, and to_fp32 hands
    back the masters."""
    model, reference = model_and_copy()
    model.to(device)
    reference = [r.detach().to(device).requires_grad_() for r in reference]
    fused = device == "cuda"
    trainer = MasterWeights(model, lambda params: torch.optim.AdamW(params, lr=1e-2, fused=fused))
    expected = torch.optim.AdamW(reference, lr=1e-2, fused=fused)
    for step in range(3):
        trainer.zero_grad()
        for p, r in zip(model.parameters(), reference):
            p.grad = seeded_grad(p, step).bfloat16()
            r.grad = p.grad.float()
        trainer.step()
        expected.step()
    for p, master, r in zip(model.parameters(), trainer.master, reference):
        torch.testing.assert_close(master, r, rtol=0, atol=0)
        assert p.dtype == torch.bfloat16 and torch.equal(p.detach(), r.detach().to(torch.bfloat16))
        assert master.grad is None  # freed after the step
    trainer.to_fp32()
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_small_updates_accumulate_in_the_master_copies():
    """A weight of 1.0 with steps of 1e-4 (under bf16's resolution of 2**-7 there): plain bf16 weights
    never move; the master copy moves by 100 steps' worth and the model follows."""
    weight = torch.nn.Parameter(torch.ones(1, dtype=torch.bfloat16))
    plain = torch.optim.SGD([weight], lr=1e-4)
    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(1.0)
    trainer = MasterWeights(model, lambda params: torch.optim.SGD(params, lr=1e-4))
    for _ in range(100):
        weight.grad = -torch.ones_like(weight)
        plain.step()
        trainer.zero_grad()
        model.weight.grad = -torch.ones_like(model.weight)
        trainer.step()
    assert weight.item() == 1.0
    assert trainer.master[0].item() == pytest.approx(1.01, rel=1e-4)
    assert model.weight.item() == pytest.approx(1.01, abs=2**-7)


def test_a_frozen_model_is_refused():
    model = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        MasterWeights(model, lambda params: torch.optim.SGD(params, lr=0.1))


def test_a_saved_state_resumes_exactly_and_to_fp32_gives_the_master_weights():
    """state_dict/load_state_dict carry the master copies and AdamW's moments: a fresh model that
    loads them takes the same next step; to_fp32 puts the fp32 masters in the model."""
    def run(trainer, model, steps):
        for step in steps:
            trainer.zero_grad()
            for p in model.parameters():
                p.grad = seeded_grad(p, step).bfloat16()
            trainer.step()

    def adamw(params):
        return torch.optim.AdamW(params, lr=1e-2)
    model, _ = model_and_copy()
    trainer = MasterWeights(model, adamw)
    run(trainer, model, range(2))
    buffer = io.BytesIO()  # as a checkpoint on disk: optimizer state dicts hold live references
    torch.save(trainer.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer)
    run(trainer, model, [2])
    resumed_model, _ = model_and_copy()
    resumed = MasterWeights(resumed_model, adamw)
    resumed.load_state_dict(state)
    run(resumed, resumed_model, [2])
    for a, b in zip(trainer.master, resumed.master):
        assert torch.equal(a, b)
    resumed.to_fp32()
    for p, master in zip(resumed_model.parameters(), trainer.master):
        assert p.dtype == torch.float32 and torch.equal(p.detach(), master.detach())


def test_an_fp32_optimizer_state_is_refused_with_a_reason():
    model, _ = model_and_copy()
    plain = torch.optim.AdamW(model.parameters(), lr=1e-2)
    trainer = MasterWeights(model, lambda params: torch.optim.AdamW(params, lr=1e-2))
    with pytest.raises(ValueError, match="without bf16 weights"):
        trainer.load_state_dict(plain.state_dict())
