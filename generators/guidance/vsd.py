"""VSD (ProlificDreamer) baseline: a LoRA model of the current renders plays the baseline branch.

    grad = w(t) (eps_u + s (eps_c - eps_u) - eps_lora(z_t; y, c2w))      threestudio, s = 7.5 (diffusers)

eps_c / eps_u: the frozen model with the view-dependent prompt / the negative (or empty) text.
eps_lora: the same UNet with rank-4 LoRA adapters, the view-independent prompt and the camera
(flattened 4x4 c2w through a `TimestepEmbedding(16 -> time_embed_dim)` used as the UNet's class
embedding). Each iteration the LoRA and the camera embedding take one optimiser step on the
renders' (detached) latents: t ~ U[0, 1000), MSE to the noise, the camera condition zeroed for the
whole batch with probability 0.1. Every constant lives in `VSDConfig`.

Why a third mode of the core and not a denoiser that returns a pair (eps_tgt, eps_src) whose
ordinary combine is the VSD gradient: the ordinary combine subtracts the sampled noise, which a
denoiser never sees, so such a pair would have to carry the CFG (and the noise) inside the
denoiser, a second copy of the CFG logic. Instead the frozen target and unconditional branches
are the ordinary batched two-branch call (`UNetDenoiser`), and the LoRA prediction is a third,
*baseline* branch that `score_distillation(mode="vsd")` subtracts where SDS subtracts the noise:
CFG, weighting, nan_to_num and clamp stay in score_distillation.py.

Memory: the LoRA model is not a copy of the UNet. peft wraps the UNet's own attention projections;
the frozen branches run with the adapters disabled (peft then calls the wrapped layer alone, so
they are exactly the base model), the LoRA branch with them enabled and the camera embedding
installed as class embedding. Between calls the UNet is left as the frozen model.

Departures from threestudio, both named: the LoRA model is the base UNet (threestudio @28d9d80
used SD 2.1 768-v, converted to eps; its later prolificdreamer.yaml uses the base model for both,
its "single model" path); and with guidance_scale_lora != 1 the camera-free half keeps the
view-independent prompt (threestudio pairs it with the unconditional text). At the default 1.0
neither half-choice matters: that half is not evaluated.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.cameras import Cameras
from generators.config import VSDConfig
from generators.guidance.denoiser import BranchInputs, UNetDenoiser
from generators.guidance.finetune import AdapterFinetune
from generators.guidance.score_distillation import combine_cfg

ADAPTER = "vsd"  # the peft adapter name on the shared UNet
CAMERA_DIM = 16  # a flattened 4x4 matrix


def camera_condition(cameras: Cameras) -> Tensor:
    """[B, 16] the flattened OpenGL camera-to-world matrices (threestudio's "extrinsics")."""
    return cameras.c2w.reshape(len(cameras), CAMERA_DIM)


def drop_camera_condition(camera: Tensor, p: float, generator: torch.Generator) -> tuple[Tensor, bool]:
    """lora_cfg_training: with probability p the whole batch's condition [B, 16] becomes zeros.

    One draw per call, always made (also when p is 0), so the step generator's stream does not
    depend on p.
    """
    drop = bool(torch.rand((), generator=generator) < p)
    return (torch.zeros_like(camera) if drop else camera), drop


class LoRAModel:
    """The LoRA-adapted, camera-conditioned copy of `unet` (sharing its weights) and its trainer."""

    def __init__(self, unet, alphas_cumprod: Tensor, cfg: VSDConfig):
        from diffusers.models.embeddings import TimestepEmbedding
        from peft import LoraConfig

        if cfg.camera_condition != "extrinsics":
            raise ValueError(f"unknown VSD camera condition {cfg.camera_condition!r}")
        if unet.class_embedding is not None:
            raise ValueError("VSD's camera condition needs a UNet without its own class embedding")
        self.unet = unet
        self.cfg = cfg
        self.alphas_cumprod = alphas_cumprod  # [T]
        if ADAPTER in (getattr(unet, "peft_config", None) or {}):
            unet.delete_adapters(ADAPTER)  # left by an earlier run in this process: start afresh
        unet.add_adapter(LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                    target_modules=list(cfg.lora_target_modules), init_lora_weights=True),
                         adapter_name=ADAPTER)
        unet.disable_adapters()  # the UNet stays the frozen model except inside `active`
        time_embed_dim = unet.time_embedding.linear_2.out_features
        self.camera_embedding = TimestepEmbedding(CAMERA_DIM, time_embed_dim).to(unet.device, unet.dtype)
        params = {n: p for n, p in unet.named_parameters() if f".{ADAPTER}." in n and "lora_" in n}
        if not params:
            raise ValueError(f"no LoRA target module among {cfg.lora_target_modules} in this UNet")
        params.update({f"camera_embedding.{n}": p for n, p in self.camera_embedding.named_parameters()})
        self.trainer = AdapterFinetune(params, cfg.lr, cfg.adam_eps, cfg.adam_betas, cfg.weight_decay)

    @property
    def params(self) -> dict[str, torch.nn.Parameter]:
        return self.trainer.params

    @contextmanager
    def active(self):
        """The UNet as the LoRA model: adapters on, camera embedding as class embedding; restored after."""
        unet = self.unet
        unet.enable_adapters()
        unet.class_embedding = self.camera_embedding
        try:
            yield unet
        finally:
            unet.class_embedding = None
            unet.disable_adapters()
            # peft's disable also clears requires_grad on the adapter weights, and autograd drops the
            # gradient of a leaf that no longer requires it: the graph just built would train nothing
            for p in self.trainer.params.values():
                p.requires_grad_(True)

    def predict(self, z_t: Tensor, t: Tensor, text: Tensor, camera: Tensor) -> Tensor:
        """z_t [B, c, h, w], t [B], text [B, L, D], camera [B, 16] -> eps_lora [B, c, h, w] (fp32)."""
        dtype = self.unet.dtype
        with self.active() as unet:
            eps = unet(z_t.to(dtype), t, encoder_hidden_states=text.to(dtype), class_labels=camera.to(dtype),
                       cross_attention_kwargs={"scale": self.cfg.lora_scale}, return_dict=False)[0]
        return eps.float()

    def loss(self, latents: Tensor, text: Tensor, camera: Tensor, generator: torch.Generator) -> Tensor:
        """One LoRA training loss on the renders' latents [B, c, h, w] (detached here): MSE to the noise."""
        cfg = self.cfg
        n = cfg.lora_timestep_samples
        x0 = latents.detach().repeat(n, 1, 1, 1)  # [nB, c, h, w]
        device = x0.device
        num_t = self.alphas_cumprod.shape[0]
        lo, hi = int(num_t * cfg.lora_t_range[0]), int(num_t * cfg.lora_t_range[1])
        t = torch.randint(lo, hi, (x0.shape[0],), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device=device, dtype=x0.dtype)
        camera, _ = drop_camera_condition(camera, cfg.camera_condition_dropout, generator)
        a = self.alphas_cumprod.to(device)[t].float().view(-1, 1, 1, 1)
        z_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        eps = self.predict(z_t, t, text.repeat(n, 1, 1), camera.repeat(n, 1))
        return F.mse_loss(eps, noise.float())


class VSDDenoiser:
    """Frozen target and unconditional branches in one batched call; the LoRA model as the baseline."""

    def __init__(self, frozen: UNetDenoiser, lora: LoRAModel):
        self.frozen = frozen
        self.lora = lora

    def predict(self, z_t: Tensor, t: Tensor, target: BranchInputs, source: BranchInputs) -> tuple[Tensor, Tensor]:
        return self.frozen.predict(z_t, t, target, source)  # adapters are off outside LoRAModel.active

    def predict_baseline(self, z_t: Tensor, t: Tensor, baseline: BranchInputs) -> Tensor:
        """eps_lora [B, c, h, w]; with guidance_scale_lora != 1, CFG over the camera condition."""
        if baseline.camera is None:
            raise ValueError("the VSD baseline branch needs a camera condition")
        scale = self.lora.cfg.guidance_scale_lora
        if scale == 1.0:  # eps(0) + 1 (eps(c) - eps(0)) is eps(c): the camera-free half is not needed
            return self.lora.predict(z_t, t, baseline.text_embeds, baseline.camera)
        b = z_t.shape[0]
        eps = self.lora.predict(torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([baseline.text_embeds] * 2),
                                torch.cat([baseline.camera, torch.zeros_like(baseline.camera)]))
        return combine_cfg(eps[:b], eps[b:], scale, "diffusers")
