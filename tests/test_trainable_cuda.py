"""The trainable parts on CUDA with the half-precision networks the sets load there (skipped without CUDA).

Each step's optimiser must see that step's gradient only: the fp32 master copies get the
network parameters' gradient, so a network gradient left over from the step before would be
fed to Adam again (issue 10, defect 1). A synthetic loss sum(w * p) has gradient w exactly, so
the master gradient of step k must equal w_k rounded to the network dtype; every trainable
tensor must get it, and each step must move its master weights.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _trainers():
    from generators.config import FinetuneConfig, VSDConfig
    from generators.guidance.finetune import AdapterFinetune
    from generators.guidance.vsd import LoRAModel
    from generators.models.loader import load_models

    models = load_models("tiny", {"ip_adapter", "controlnet"}, "cuda")  # the set's cuda_dtype (fp16)
    yield "ip-adapter finetune", AdapterFinetune.for_source(models, "ip-adapter", FinetuneConfig(layer=models.finetune_layer))
    yield "controlnet finetune", AdapterFinetune.for_source(models, "controlnet", FinetuneConfig(layer="controlnet_down_blocks.-1"))
    yield "vsd lora", LoRAModel(models.unet, models.scheduler.alphas_cumprod, VSDConfig()).trainer


def test_each_step_feeds_the_optimiser_its_own_gradient_only():
    gen = torch.Generator(device="cuda").manual_seed(0)
    checked = []
    for name, trainer in _trainers():
        assert any(p.dtype != torch.float32 for p in trainer.params.values()), f"{name}: not a half-precision network"
        for step in range(3):
            trainer.zero_grad()
            weights = {k: torch.randn(p.shape, generator=gen, device="cuda") for k, p in trainer.params.items()}
            loss = sum((w * p.float()).sum() for (k, p), w in zip(trainer.params.items(), weights.values()))
            loss.backward()
            before = {k: m.detach().clone() for k, m in trainer.masters.items()}
            trainer.step()
            for k, p in trainer.params.items():
                own = weights[k].to(p.dtype).float()  # this step's gradient, in the network's dtype
                got = trainer.masters[k].grad
                assert got is not None, f"{name} step {step}: no gradient for {k}"
                torch.testing.assert_close(got, own, rtol=0, atol=0,
                                           msg=lambda m: f"{name} step {step}, {k}: not this step's gradient ({m})")
                assert not torch.equal(trainer.masters[k].detach(), before[k]), f"{name} step {step}: {k} did not move"
        checked.append(name)
    assert checked == ["ip-adapter finetune", "controlnet finetune", "vsd lora"]
