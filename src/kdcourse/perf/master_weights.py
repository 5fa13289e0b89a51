"""`MasterWeights`: bf16 weights in the model, fp32 master copies in the optimizer (the bench's
`--bf16_weights` row, `make traffic ARGS="--bf16_weights true"` and train_distill.py's `--bf16_weights`).

    trainer = MasterWeights(model, lambda params: torch.optim.AdamW(params, lr=5e-5, fused=True))
    loss.backward(); trainer.step(); trainer.zero_grad()
"""
from __future__ import annotations

import torch


class MasterWeights:
    """bf16 weights in the model, fp32 master copies in the optimizer.

    The model's trainable parameters become bf16 (its buffers, e.g. rotary frequencies, stay as they
    are). Run the model without autocast: CUDA's autocast computes layer norms in fp32, and
    ModernBERT's residual stream starts from one, so it would stay fp32. Without it, activations and
    the residual stream are bf16 and the compiled student's fused kernels move fewer bytes
    (`python -m kdcourse.perf.traffic --bf16_weights true`). The optimizer (`make_optimizer(fp32 copies)`) updates
    the fp32 copies, which are cast back into the model after each step: updates smaller than bf16's
    resolution (about 1/256 of a weight) accumulate instead of rounding away. Use it where the
    optimizer was: `zero_grad()` (gradients always set to None), `step()`, `state_dict()` and
    `load_state_dict()` for checkpoints (the master copies are saved: a resume is exact); a learning
    rate schedule takes `.optimizer`. `to_fp32()` ends it: the model gets the fp32 master weights.
    """

    def __init__(self, model: torch.nn.Module, make_optimizer):
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("MasterWeights: the model has no trainable parameters")
        self.master = [p.detach().float().clone().requires_grad_(True) for p in self.params]
        for p in self.params:  # parameters only: buffers (rotary frequencies) keep their precision
            p.data = p.data.to(torch.bfloat16)
        self.optimizer = make_optimizer(self.master)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for master, p in zip(self.master, self.params):
            master.grad = None if p.grad is None else p.grad.float()
        self.optimizer.step()
        torch._foreach_copy_(self.params, self.master)  # fp32 -> bf16, rounded to nearest
        for master in self.master:  # 4 bytes a parameter, needed again only at the next step
            master.grad = None

    def state_dict(self) -> dict:
        """The fp32 master copies and the optimizer's state: what a resumed run needs. Like
        Module.state_dict, it holds the live tensors (no copy): save it before the next step."""
        return {"master": [m.detach() for m in self.master],
                "optimizer": self.optimizer.state_dict()}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        saved = state.get("master") if isinstance(state, dict) else None
        if saved is None or [t.shape for t in saved] != [m.shape for m in self.master]:
            raise ValueError("this optimizer state has no fp32 master copies of this model's "
                             "weights: it was saved by a run without bf16 weights, or for "
                             "another model")
        torch._foreach_copy_(self.master, saved)
        torch._foreach_copy_(self.params, self.master)
        self.optimizer.load_state_dict(state["optimizer"])

    @torch.no_grad()
    def to_fp32(self) -> None:
        """Put the fp32 master weights in the model (to evaluate or save it after training)."""
        for p, master in zip(self.params, self.master):
            p.data = master.detach().clone()
            p.grad = None
