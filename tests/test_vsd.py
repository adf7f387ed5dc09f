"""VSD on the tiny models: the LoRA trains alone on a UNet it shares with the frozen model, the camera
condition and its dropout, the exact gradient of an untrained LoRA, and the LoRA learning the renders."""

import pytest
import torch

from generators.cameras import make_cameras
from generators.config import CameraConfig, GuidanceConfig
from generators.guidance.denoiser import BranchInputs, UNetDenoiser
from generators.guidance.guide import Guidance
from generators.guidance.score_distillation import score_distillation
from generators.guidance.sources import VSDSource
from generators.guidance.vsd import LoRAModel, camera_condition, drop_camera_condition
from generators.models.loader import load_models
from generators.render.types import RenderOutput

B = 2
PROMPT = "a red apple"


def fresh_models():
    """A private copy of the tiny set: VSD adds adapters to its UNet and trains them."""
    return load_models("tiny", {"base"}, "cpu")


def vsd_config(**vsd) -> GuidanceConfig:
    c = GuidanceConfig()
    c.vae_input_size = 64
    c.cfg_convention, c.guidance_scale = "diffusers", 7.5
    c.source.kind, c.source.text = "lora", "empty"
    for k, v in vsd.items():
        setattr(c.source.vsd, k, v)
    return c


def cameras(n=B, size=32):
    return make_cameras(torch.full((n,), 15.0), torch.linspace(0, 200, n), torch.full((n,), 3.0),
                        torch.full((n,), 50.0), size, size)


def fixed_render(seed=0, n=B, size=32):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g)
    rgb = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").permute(0, 2, 3, 1)
    ones = torch.ones(n, size, size, 1)
    return RenderOutput(rgb.contiguous().requires_grad_(True), ones, 3.0 * ones, torch.zeros(n, 1, 2),
                        torch.zeros(n, 1, dtype=torch.int32))


def frozen_eps(models, z_t, t, texts):
    """The frozen model's (target, source) predictions through the ordinary two-branch call."""
    target = BranchInputs(models.encode_text(texts[0]))
    source = BranchInputs(models.encode_text(texts[1]))
    with torch.no_grad():
        return UNetDenoiser(models.unet).predict(z_t, t, target, source)


def fixed_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 4, 8, 8, generator=g), torch.tensor([150, 700])


def test_only_the_lora_trains_and_the_frozen_model_stays_bit_identical():
    models = fresh_models()
    z_t, t = fixed_inputs()
    texts = ([PROMPT + ", front view"] * B, [""] * B)
    frozen_before = frozen_eps(models, z_t, t, texts)
    modules = {"unet": models.unet, "vae": models.vae, "text": models.text_encoder}
    before = {f"{m}.{n}": p.detach().clone() for m, mod in modules.items() for n, p in mod.named_parameters()}

    torch.manual_seed(0)
    guide = Guidance(models, vsd_config(lr=1e-3), CameraConfig(), PROMPT)
    lora = guide.source.lora
    assert guide.trainer is lora.trainer and guide.finetune is None
    # rank-4 adapters on every to_q/to_k/to_v/to_out.0 of the shared UNet: r (in + out) weights each
    targets = [m for n, m in models.unet.named_modules()
               if n.endswith((".to_q", ".to_k", ".to_v", ".to_out.0")) and hasattr(m, "base_layer")]
    expected = sum(4 * (m.base_layer.in_features + m.base_layer.out_features) for m in targets)
    assert len(targets) > 0 and expected == sum(p.numel() for n, p in lora.params.items() if "lora_" in n)
    camera_numel = sum(p.numel() for p in lora.camera_embedding.parameters())
    assert sum(p.numel() for p in lora.params.values()) == expected + camera_numel

    at_init = {n: p.detach().clone() for n, p in lora.params.items()}
    got_grad = dict.fromkeys(lora.params, False)
    render = fixed_render()
    for step in range(3):
        out = guide(render, cameras(), step, torch.Generator().manual_seed(step))
        assert out.loss_finetune is not None and "norm_baseline_error" in out.logs
        guide.trainer.zero_grad()
        (out.loss_sds + out.loss_finetune).backward()
        for n, p in lora.params.items():
            got_grad[n] |= p.grad is not None and bool(p.grad.abs().sum() > 0)
        guide.trainer.step()

    # AdamW moves every trained weight that had a gradient or is non-zero (decay); a zero B whose
    # gradient is identically zero (q/k of a one-token attention) legitimately stays put
    movable = {id(p) for n, p in lora.params.items() if got_grad[n] or bool(at_init[n].abs().sum() > 0)}
    assert len(movable) >= 0.9 * len(lora.params)
    changed = {id(p) for n, p in lora.params.items() if not torch.equal(p.detach(), at_init[n])}
    for m, mod in modules.items():
        for n, p in mod.named_parameters():
            key = f"{m}.{n}"
            if key in before and not torch.equal(p.detach(), before[key]):
                changed.add(id(p))
    assert changed == movable  # exactly the LoRA and the camera embedding moved; no base weight did
    assert any(not torch.equal(p, torch.zeros_like(p)) for n, p in lora.params.items() if "lora_B" in n)

    # adapters disabled (the state between calls): the frozen model, bit for bit
    frozen_after = frozen_eps(models, z_t, t, texts)
    assert torch.equal(frozen_before[0], frozen_after[0]) and torch.equal(frozen_before[1], frozen_after[1])
    assert models.unet.class_embedding is None
    # ... while the trained LoRA branch is now a different model
    text = models.encode_text([PROMPT] * B)
    with torch.no_grad():
        eps_lora = lora.predict(z_t, t, text, camera_condition(cameras()))
    assert not torch.allclose(eps_lora, frozen_before[0], atol=1e-4)

    # a later run on the same (cached) models starts from a fresh, zero-B LoRA
    again = LoRAModel(models.unet, models.scheduler.alphas_cumprod.float(), vsd_config().source.vsd)
    assert all(torch.equal(p, torch.zeros_like(p)) for n, p in again.params.items() if "lora_B" in n)


def test_camera_condition_reaches_eps_lora_and_is_dropped_with_its_probability():
    models = fresh_models()
    torch.manual_seed(1)
    lora = VSDSource(models, vsd_config(), CameraConfig(), PROMPT).lora
    z_t, t = fixed_inputs(1)
    text = models.encode_text([PROMPT] * B)
    cam = camera_condition(cameras())
    other = camera_condition(make_cameras(torch.full((B,), 40.0), torch.tensor([90.0, -90.0]), torch.full((B,), 2.0),
                                          torch.full((B,), 50.0), 32, 32))
    with torch.no_grad():
        a, b = lora.predict(z_t, t, text, cam), lora.predict(z_t, t, text, other)
        zero = lora.predict(z_t, t, text, torch.zeros_like(cam))
    assert not torch.allclose(a, b) and not torch.allclose(a, zero)

    # the dropout: one draw per step from the step generator, the whole batch at once
    drops = [drop_camera_condition(cam, 0.1, torch.Generator().manual_seed(s))[1] for s in range(2000)]
    assert 0.08 < sum(drops) / len(drops) < 0.12
    kept, dropped = drop_camera_condition(cam, 0.0, torch.Generator())[0], drop_camera_condition(cam, 1.0, torch.Generator())[0]
    assert torch.equal(kept, cam) and torch.equal(dropped, torch.zeros_like(cam))

    # ... inside the LoRA loss: p = 1 is exactly the loss on a zero condition, p = 0 the loss on c2w
    latents = torch.randn(B, 4, 8, 8, generator=torch.Generator().manual_seed(5))

    def loss(p, camera):
        lora.cfg.camera_condition_dropout = p
        with torch.no_grad():
            return lora.loss(latents, text, camera, torch.Generator().manual_seed(11))

    assert torch.equal(loss(1.0, cam), loss(0.0, torch.zeros_like(cam)))
    assert not torch.equal(loss(0.0, cam), loss(1.0, cam))


def test_an_untrained_lora_without_camera_effect_gives_w_times_s_minus_1_times_the_cfg_difference():
    """With B = 0 (peft's init) and a camera embedding that outputs 0, eps_lora is the frozen model's
    conditional prediction eps_c (view-independent prompt = the target prompt when view-dependent
    prompting is off), so

        grad = w (eps_u + s (eps_c - eps_u) - eps_c) = w (s - 1) (eps_c - eps_u)      (diffusers convention)
    """
    models = fresh_models()
    cfg = vsd_config()
    cfg.grad_clip = None
    camera_cfg = CameraConfig(view_dependent_prompting=False)
    torch.manual_seed(2)
    guide = Guidance(models, cfg, camera_cfg, PROMPT)
    emb = guide.source.lora.camera_embedding
    with torch.no_grad():
        emb.linear_2.weight.zero_()
        emb.linear_2.bias.zero_()

    from generators.guidance.sources import StepContext

    render = fixed_render(3)
    images = render.rgb.detach().permute(0, 3, 1, 2)
    images = torch.nn.functional.interpolate(images, size=(64, 64), mode="bilinear", align_corners=False)
    latents = models.codec.encode(images, generator=torch.Generator().manual_seed(0))
    ctx = StepContext(0, cameras(), images, render)
    target, source = guide.source.branches(ctx)
    out = score_distillation(guide.denoiser, guide.alphas_cumprod, latents, target, source, cfg, 0,
                             torch.Generator().manual_seed(4), mode="vsd", baseline=guide.source.baseline(ctx))
    torch.testing.assert_close(out.eps_baseline, out.eps_tgt, rtol=1e-5, atol=1e-6)  # eps_lora = eps_c
    w = (1 - out.alpha_bar).view(-1, 1, 1, 1)
    expected = w * (7.5 - 1.0) * (out.eps_tgt - out.eps_src)
    torch.testing.assert_close(out.grad, expected, rtol=1e-4, atol=1e-5)
    assert out.grad.abs().max() > 1e-3  # not trivially zero
    # the SDS gradient of the same draw is a different quantity (it subtracts the noise)
    sds = score_distillation(guide.denoiser, guide.alphas_cumprod, latents, target, source, cfg, 0,
                             torch.Generator().manual_seed(4), mode="cfg")
    assert not torch.allclose(sds.grad, out.grad, atol=1e-3)


def test_lora_training_lowers_its_own_denoising_loss():
    models = fresh_models()
    torch.manual_seed(3)
    lora = VSDSource(models, vsd_config(lr=3e-3, camera_condition_dropout=0.0), CameraConfig(), PROMPT).lora
    latents = torch.randn(B, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    text = models.encode_text([PROMPT] * B)
    cam = camera_condition(cameras())

    def held_out_loss():  # the same 8 (t, noise) draws every time
        with torch.no_grad():
            return sum(lora.loss(latents, text, cam, torch.Generator().manual_seed(1000 + s)).item() for s in range(8))

    start = held_out_loss()
    for step in range(15):
        lora.trainer.zero_grad()
        lora.loss(latents, text, cam, torch.Generator().manual_seed(step)).backward()
        lora.trainer.step()
    assert held_out_loss() < 0.97 * start
    assert any(bool(p.abs().sum() > 0) for n, p in lora.params.items() if "lora_B" in n)  # the adapters learned


@pytest.mark.parametrize("prediction", ["v_prediction"])
def test_a_non_epsilon_model_is_refused_with_a_clear_error(prediction):
    models = fresh_models()
    models.scheduler.register_to_config(prediction_type=prediction)
    with pytest.raises(ValueError, match="epsilon-prediction"):
        VSDSource(models, vsd_config(), CameraConfig(), PROMPT)
