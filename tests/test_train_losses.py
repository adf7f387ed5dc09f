"""The run loop's own loss terms against the recipe they come from."""

import torch


def test_sparsity_loss_is_gaussiandreamers_with_the_max_not_detached():
    from generators.train import sparsity_loss

    g = torch.Generator().manual_seed(0)
    depth = (1 + 3 * torch.rand(2, 8, 8, 1, generator=g)).requires_grad_(True)
    alpha = torch.rand(2, 8, 8, 1, generator=g)
    sparsity_loss(depth, alpha).backward()
    reference = depth.detach().clone().requires_grad_(True)
    acc = reference * alpha
    torch.sqrt((acc / (acc.max() + 1e-5)) ** 2 + 0.01).mean().backward()  # GaussianDreamer's terms
    torch.testing.assert_close(depth.grad, reference.grad)
    # the pixel holding the max gets the max's own (negative) share: a detached max would miss it
    top = (depth.detach() * alpha).flatten().argmax()
    assert depth.grad.flatten()[top] < 0
