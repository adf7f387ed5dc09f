"""Work the guidance no longer does changes nothing: each saving against the computation it replaced,
on the tiny set (generators/flops.py counts what each one saves at full size)."""

import pytest
import torch

from generators.cameras import make_cameras
from generators.guidance.sources import StepContext
from generators.methods import resolve_run_config
from generators.models.loader import load_models
from generators.render.types import RenderOutput
from generators.train import build_guidance, required_components

B = 3


def fixed_render(n=B, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").permute(0, 2, 3, 1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    depth = (3.0 - 0.5 * torch.clamp(1 - xx**2 - yy**2, min=0).sqrt())[None, ..., None].expand(n, -1, -1, -1)
    alpha = ((xx**2 + yy**2) < 1).float()[None, ..., None].expand(n, -1, -1, -1)
    return RenderOutput(rgb.contiguous(), alpha.contiguous(), depth.contiguous(), torch.zeros(n, 1, 2),
                        torch.zeros(n, 1, dtype=torch.int32))


def tiny_guidance(method):
    cfg = resolve_run_config(method, prompt="a red apple", models="tiny")
    models = load_models("tiny", required_components(cfg) - {"shap_e"}, "cpu")
    return build_guidance(cfg, models)


@pytest.mark.parametrize("method", ["anchords-ipa-finetune", "anchords-cn-finetune"])
def test_finetune_target_branch_apart_changes_nothing(method):
    """With autograd on, the target branch runs as its own call under no_grad: eps_target, eps_source
    and the finetuned adapter's gradient equal those of the one batched 2B call it replaced."""
    guidance = tiny_guidance(method)
    cams = make_cameras(torch.full((B,), 15.0), torch.linspace(0, 240, B), torch.full((B,), 3.0),
                        torch.full((B,), 50.0), 64, 64)
    render = fixed_render()
    ctx = StepContext(0, cams, render.rgb.permute(0, 3, 1, 2), render)
    target, source = guidance.source.branches(ctx)
    g = torch.Generator().manual_seed(1)
    z_t, t = torch.randn(B, 4, 8, 8, generator=g), torch.tensor([200, 500, 800])
    params = guidance.finetune.params

    def grads(eps_src):
        for p in params.values():
            p.grad = None
        eps_src.square().mean().backward()
        return {k: p.grad.clone() for k, p in params.items()}

    with torch.enable_grad():
        eps_tgt, eps_src = guidance.denoiser.predict(z_t, t, target, source)
        assert not eps_tgt.requires_grad  # no graph (and no backward) through the target views
        split = grads(eps_src)
        both = guidance.denoiser.call(z_t, t, [target, source])  # the former single call of 2B
        batched = grads(both[B:])
    torch.testing.assert_close(eps_tgt, both[:B].detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(eps_src.detach(), both[B:].detach(), rtol=1e-5, atol=1e-6)
    assert any(v.abs().sum() > 0 for v in split.values())
    for k in split:
        torch.testing.assert_close(split[k], batched[k], rtol=1e-4, atol=1e-8)
