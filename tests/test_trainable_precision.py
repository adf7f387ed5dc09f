"""The trainable part (AdapterFinetune: AnchorDS's adapter layer, VSD's LoRA) with half-precision
network weights: fp32 master copies, and each step's master gradient is that step's own gradient
(not the running sum of every past step's), on CPU in fp16 and bf16."""

import pytest
import torch
from torch import nn

from generators.guidance.finetune import AdapterFinetune


def _network(dtype: torch.dtype) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).to(dtype)
    net.requires_grad_(False)  # frozen except what the trainer takes
    return net


def _loss(net: nn.Module, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(32, 8, generator=g).to(net[0].weight.dtype)
    y = torch.randn(32, 4, generator=g)
    return ((net(x).float() - y) ** 2).mean()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_each_steps_master_gradient_is_that_steps_own_gradient(dtype):
    net = _network(dtype)
    params = {f"1.{n}": p for n, p in net[2].named_parameters()}  # the last layer trains
    trainer = AdapterFinetune(params, lr=1e-3, adam_eps=1e-15)
    assert all(m.dtype == torch.float32 for m in trainer.masters.values())
    for step in range(4):
        # this step's own gradient, at the current weights, computed apart from the trainer
        own = torch.autograd.grad(_loss(net, step), list(params.values()))
        trainer.zero_grad()
        assert all(p.grad is None for p in params.values())  # the network's half copies too
        _loss(net, step).backward()
        trainer.step()
        for (name, master), g in zip(trainer.masters.items(), own):
            assert master.grad is not None and master.grad.dtype == torch.float32
            torch.testing.assert_close(master.grad, g.float(), rtol=0, atol=0, msg=f"step {step} {name}")
        # the half-precision network carries the updated master values
        for name, p in params.items():
            assert torch.equal(p.detach(), trainer.masters[name].detach().to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_network_follows_the_fp32_trajectory(dtype):
    """Adam on fp32 masters with a half network lands near the same weights as an fp32 network."""
    runs = {}
    for run_dtype in (torch.float32, dtype):
        net = _network(run_dtype)
        params = {f"1.{n}": p for n, p in net[2].named_parameters()}
        trainer = AdapterFinetune(params, lr=1e-2, adam_eps=1e-15)
        for step in range(20):
            trainer.zero_grad()
            _loss(net, step).backward()
            trainer.step()
        runs[run_dtype] = torch.cat([m.detach().flatten() for m in trainer.masters.values()])
    start = torch.cat([p.detach().float().flatten() for p in _network(torch.float32)[2].parameters()])
    moved = runs[torch.float32] - start
    drift = runs[dtype] - runs[torch.float32]
    # the half run's path differs by rounding only; the summed-gradient defect drives it far off
    assert drift.norm() < 0.1 * moved.norm()
