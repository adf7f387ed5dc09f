"""The ToyWorld prior: Stable Diffusion's architecture families at toy size, trained from scratch.

    text    CLIPTokenizer (byte level, no merges) + CLIPTextModel          -> [B, 77, 64]
    image   CLIPImageProcessor (32 px, CLIP mean/std) + CLIPVisionModelWithProjection,
            penultimate hidden states [B, 65, 64] -> IP-Adapter-Plus Resampler (diffusers'
            own `unet.encoder_hid_proj`) -> 8 image tokens, read by attn2's to_k_ip / to_v_ip
    UNet    UNet2DConditionModel on "latents" = pixel_unshuffle(2 * rgb - 1, 2): [B, 12, 16, 16]
    noise   DDIMScheduler config: cosine betas, epsilon prediction, 1000 steps

The adapter enters the UNet through diffusers' IP-Adapter loader (`_load_ip_adapter_weights`)
from a state dict in the original h94 key layout, and `ip_adapter_state_dict` turns the trained
modules back into that layout, so the exported set loads like the real IP-Adapter-Plus.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from generators.models.diffusers_logging import quiet_empty_fp32_warning
from generators.toyworld.config import PriorNetConfig

quiet_empty_fp32_warning()  # the adapter is loaded through diffusers' IP-Adapter loader

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BOS_ID, EOS_ID = 512, 513  # byte-level vocabulary: 256 bytes, 256 bytes + "</w>", then these


# ----------------------------------------------------------------------------------------------
# Builders of the individual Hugging Face components


def byte_alphabet() -> list[str]:
    """CLIP's byte -> printable-character table (transformers 5 no longer exports it)."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def build_tokenizer(max_length: int = 77):
    """A byte-level CLIPTokenizer built offline: one token per character, `</w>` marks word ends."""
    from transformers import CLIPTokenizer

    chars = byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = BOS_ID
    vocab["<|endoftext|>"] = EOS_ID
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        # without model_max_length the diffusers pipelines overflow (OverflowError: int too big to convert)
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=max_length)


def build_text_encoder(cfg: PriorNetConfig):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=514, hidden_size=cfg.text_hidden, intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=EOS_ID,
        projection_dim=cfg.cross_attention_dim,
    ))


def build_unet(cfg: PriorNetConfig, size: int = 32):
    from diffusers import UNet2DConditionModel

    channels = 3 * cfg.factor**2
    return UNet2DConditionModel(
        sample_size=size // cfg.factor, in_channels=channels, out_channels=channels,
        layers_per_block=cfg.layers_per_block, block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(cfg.down_block_types), up_block_types=tuple(cfg.up_block_types),
        cross_attention_dim=cfg.cross_attention_dim, attention_head_dim=cfg.attention_head_dim,
        norm_num_groups=cfg.norm_num_groups,
    )


def build_image_encoder(cfg: PriorNetConfig, size: int = 32):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    return CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_intermediate,
        num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads, image_size=size,
        patch_size=cfg.vision_patch, projection_dim=cfg.vision_projection,
    ))


def build_image_processor(size: int = 32):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        do_resize=True, size={"shortest_edge": size}, do_center_crop=True, crop_size={"height": size, "width": size},
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD), do_convert_rgb=True,
    )


def build_scheduler(cfg: PriorNetConfig):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
    )


# ----------------------------------------------------------------------------------------------
# IP-Adapter-Plus: original (h94) key layout <-> diffusers modules


def fresh_ip_adapter_state(cfg: PriorNetConfig, unet) -> dict[str, dict[str, Tensor]]:
    """A randomly initialised adapter {"image_proj": ..., "ip_adapter": ...} in the h94 layout.

    The Resampler starts from diffusers' own initialisation; image K/V projections start as
    torch's default Linear init (random, not zero, so the image path carries gradient at once).
    """
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    resampler = IPAdapterPlusImageProjection(
        embed_dims=cfg.vision_hidden, output_dims=cfg.cross_attention_dim, hidden_dims=cfg.ip_hidden,
        depth=4, dim_head=64, heads=cfg.ip_heads, num_queries=cfg.ip_tokens,
    )
    ip: dict[str, Tensor] = {}
    modules = dict(unet.named_modules())
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            hidden = modules[name[: -len(".processor")]].to_q.out_features
            for kv in ("to_k_ip", "to_v_ip"):
                ip[f"{index}.{kv}.weight"] = nn.Linear(cfg.cross_attention_dim, hidden, bias=False).weight.detach()
    return {"image_proj": resampler_to_original(resampler.state_dict()), "ip_adapter": ip}


def resampler_to_original(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """diffusers IPAdapterPlusImageProjection keys -> the h94 Resampler keys (inverse of diffusers'
    `_convert_ip_adapter_image_proj_to_diffusers` for the Plus adapter)."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not key.startswith("layers."):
            out[key] = value.detach().clone()
            continue
        _, i, rest = key.split(".", 2)
        p = f"layers.{i}"
        if rest.startswith("ln0."):
            out[f"{p}.0.norm1.{rest[4:]}"] = value
        elif rest.startswith("ln1."):
            out[f"{p}.0.norm2.{rest[4:]}"] = value
        elif rest == "attn.to_q.weight":
            out[f"{p}.0.to_q.weight"] = value
        elif rest == "attn.to_k.weight":
            out[f"{p}.0.to_kv.weight"] = torch.cat([value, sd[f"{p}.attn.to_v.weight"]], dim=0)
        elif rest == "attn.to_v.weight":
            continue  # folded into to_kv above
        elif rest == "attn.to_out.0.weight":
            out[f"{p}.0.to_out.weight"] = value
        elif rest.startswith("ff.0."):
            out[f"{p}.1.0.{rest[5:]}"] = value
        elif rest == "ff.1.net.0.proj.weight":
            out[f"{p}.1.1.weight"] = value
        elif rest == "ff.1.net.2.weight":
            out[f"{p}.1.3.weight"] = value
        else:
            raise KeyError(f"unexpected Resampler key {key!r}")
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def ip_adapter_state_dict(unet) -> dict[str, dict[str, Tensor]]:
    """The adapter currently loaded in `unet`, back in the h94 layout (for saving)."""
    if unet.encoder_hid_proj is None:
        raise ValueError("this UNet has no IP-Adapter loaded")
    resampler = unet.encoder_hid_proj.image_projection_layers[0]
    ip: dict[str, Tensor] = {}
    for index, (name, proc) in enumerate(_base_attn_processors(unet).items()):
        if hasattr(proc, "to_k_ip"):
            ip[f"{index}.to_k_ip.weight"] = proc.to_k_ip[0].weight.detach().clone()
            ip[f"{index}.to_v_ip.weight"] = proc.to_v_ip[0].weight.detach().clone()
    return {"image_proj": resampler_to_original(resampler.state_dict()), "ip_adapter": ip}


def _base_attn_processors(unet) -> dict:
    """The UNet's own attention processors in loader order (the Resampler's excluded)."""
    return {k: v for k, v in unet.attn_processors.items() if not k.startswith("encoder_hid_proj.")}


IP_PARTS = ("image_proj", "ip_adapter")  # the two halves of an h94 IP-Adapter file


def flatten_ip_state(state: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
    """{"image_proj": {...}, "ip_adapter": {...}} -> flat "image_proj.*" / "ip_adapter.*" keys (file layout)."""
    return {f"{part}.{k}": v.contiguous() for part in IP_PARTS for k, v in state[part].items()}


def unflatten_ip_state(flat: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
    """Inverse of `flatten_ip_state`: the file layout back to {"image_proj": {...}, "ip_adapter": {...}}."""
    return {part: {k[len(part) + 1:]: v for k, v in flat.items() if k.startswith(part + ".")} for part in IP_PARTS}


def unet_base_state_dict(unet) -> dict[str, Tensor]:
    """The UNet's weights without the adapter's modules (what `unet/` saves)."""
    return {k: v for k, v in unet.state_dict().items() if not k.startswith("encoder_hid_proj.") and ".processor." not in k}


# ----------------------------------------------------------------------------------------------
# The composite trained jointly


def to_latents(images: Tensor, factor: int) -> Tensor:
    """images [B, 3, H, W] in [0, 1] -> [B, 3 f^2, H/f, W/f]: the pixel-unshuffle codec (x -> 2x - 1)."""
    return F.pixel_unshuffle(2.0 * images - 1.0, factor)


def from_latents(latents: Tensor, factor: int) -> Tensor:
    """Inverse of `to_latents`, clamped to [0, 1]: [B, 3 f^2, h, w] -> [B, 3, h f, w f]."""
    return ((F.pixel_shuffle(latents, factor) + 1.0) / 2.0).clamp(0.0, 1.0)


def normalise_for_clip(images: Tensor) -> Tensor:
    """[B, 3, 32, 32] in [0, 1] -> CLIP-normalised pixel values (what the saved processor produces
    for 32 px inputs: its resize and crop are identities at that size)."""
    mean = torch.tensor(OPENAI_CLIP_MEAN, dtype=images.dtype)[None, :, None, None]
    std = torch.tensor(OPENAI_CLIP_STD, dtype=images.dtype)[None, :, None, None]
    return (images - mean) / std


class ToyPrior(nn.Module):
    """Text encoder + UNet (IP-Adapter-Plus loaded) + image encoder, trained as one module."""

    def __init__(self, cfg: PriorNetConfig, seed: int = 0, size: int = 32):
        super().__init__()
        self.cfg = cfg
        torch.manual_seed(seed)  # transformers/diffusers initialise from the global generator
        self.text_encoder = build_text_encoder(cfg)
        self.unet = build_unet(cfg, size)
        self.image_encoder = build_image_encoder(cfg, size)
        state = fresh_ip_adapter_state(cfg, self.unet)
        self.unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)
        self._token_keep: Tensor | None = None
        # zeroing the adapter's output tokens per sample makes to_v_ip output exactly 0, which is
        # what IP scale 0 gives: the way one batch trains "image dropped" in that convention
        self.unet.encoder_hid_proj.register_forward_hook(self._mask_tokens)

    def _mask_tokens(self, module, inputs, output):
        if self._token_keep is None:
            return output
        keep = self._token_keep.to(output[0].dtype)
        return [o * keep.view(-1, *([1] * (o.dim() - 1))) for o in output]

    def encode_text(self, input_ids: Tensor) -> Tensor:  # [B, 77] -> [B, 77, D]
        return self.text_encoder(input_ids)[0]

    def encode_image(self, pixel_values: Tensor) -> Tensor:  # [B, 3, 32, 32] normalised -> [B, 65, E]
        return self.image_encoder(pixel_values, output_hidden_states=True).hidden_states[-2]

    def forward(self, latents: Tensor, t: Tensor, input_ids: Tensor, pixel_values: Tensor,
                token_keep: Tensor | None = None) -> Tensor:
        """Noise prediction [B, C, h, w]. token_keep [B] (1 keep, 0 zero the image tokens)."""
        text = self.encode_text(input_ids)
        image = self.encode_image(pixel_values)
        self._token_keep = token_keep
        try:
            return self.unet(latents, t, encoder_hidden_states=text,
                             added_cond_kwargs={"image_embeds": [image[:, None]]}).sample
        finally:
            self._token_keep = None


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
