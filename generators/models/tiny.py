"""Embedded random-weight model sets: every network of the real sets, built without downloads.

Three size profiles share one builder:

    tiny  the `tiny` set: SD 1.5's architecture families at tiny widths, for CPU tests
    sd15  the `sd15-random` set: SD 1.5 / IP-Adapter-Plus / ViT-H/14 / ControlNet at their real
          sizes with random weights, so a GPU gives true per-step timings (no Shap-E, no depth
          detector: the benchmark uses `init.kind: ball`).
    sd21  the `sd21-random` set: SD 2.1-base (OpenCLIP ViT-H/14 text tower, 1024-d) / its normal
          ControlNet / Shap-E text300M at their real sizes, for the ControlNet methods and VSD.

The full-size sets are built in fp16 unless asked otherwise (`--dtype float32` doubles the disk
and saves no time: the random initialisation in fp32 dominates). Measured on a shared 2-core CPU
(2026-11-29): sd21 29 s (75 s under load) and 6.0 GB peak memory, 4.4 GB on disk in fp16 (8.7 GB
in fp32); sd15 42 s (137 s under load) and 5.1 GB peak, 4.2 GB in fp16 (8.4 GB in fp32).

The set is written to disk in the Hugging Face layout (`save_pretrained`) and loaded back by
the very same loader as the real sets, so CPU tests exercise the real loading code:

    <dir>/base/          StableDiffusionPipeline folder (unet, vae, text_encoder, tokenizer, scheduler)
    <dir>/ip_adapter/    ip-adapter-plus_tiny.safetensors (sd15: ..._sd15) + image_encoder/ (not sd21)
    <dir>/controlnet/    ControlNetModel
    <dir>/shap_e/        ShapEPipeline folder (tiny and sd21)
    <dir>/control_detector/ (tiny only)  DPTForDepthEstimation (hybrid BiT + ViT, like Intel/dpt-hybrid-midas) + DPTImageProcessor
    <dir>/tiny_set.json  builder version + seed (+ profile, dtype) (a stale cache is rebuilt)

The architecture families match SD 1.5 (UNet block structure, 8x VAE, CLIP text encoder,
IP-Adapter-Plus Resampler, ControlNet built from the UNet, Shap-E prior + renderer, DPT-Hybrid
depth network); in the tiny profile only the widths are tiny. Everything is deterministic from
the seed (per profile and dtype).

    python -m generators.models.tiny build [DIR]
    python -m generators.models.tiny build --profile sd15|sd21 [--dtype float32] [DIR]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from generators.io import atomic_write_json, honour_umask

# Bump when the builder changes what it writes: cached sets with another version are rebuilt.
TINY_SET_VERSION = 2
STAMP_FILE = "tiny_set.json"
IP_WEIGHT_NAME = "ip-adapter-plus_tiny.safetensors"

REPO_ROOT = Path(__file__).resolve().parents[2]

# Tiny widths. The SD 1.5 *structure* is kept (4 down / 4 up blocks, cross-attention in the
# first three down and last three up blocks) so layer names such as `up_blocks.3` exist.
CROSS_DIM = 32  # text width = UNet cross_attention_dim = IP token width
UNET = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(32, 32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=CROSS_DIM,
    attention_head_dim=8,
    norm_num_groups=8,
)
# 4 encoder blocks = 3 down-samplings: 64 px <-> 8x8 latents, like SD's 512 px <-> 64x64.
VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(8, 16, 16, 16),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=1,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.18215,
)
TEXT = dict(
    vocab_size=514,  # 256 bytes + 256 bytes with </w> + <|startoftext|> + <|endoftext|>
    hidden_size=CROSS_DIM,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=77,
    bos_token_id=512,
    eos_token_id=513,
    pad_token_id=513,
    projection_dim=CROSS_DIM,
)
VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8, projection_dim=32)
# IP-Adapter-Plus Resampler: diffusers infers heads = rows(to_q) // 64 and needs depth 4.
RESAMPLER = dict(hidden=64, heads=1, queries=4, depth=4, ff_mult=4)
# SD 1.5's noise schedule (scaled-linear 0.00085-0.012, T = 1000), as its scheduler config has.
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
# 3 stride-2 convs: a 64 px control image lands on the 8x8 latent grid, like SD's 512 px.
CONTROLNET_COND_CHANNELS = (8, 8, 16, 16)
SHAP_E_LATENT = 32  # prior embedding_dim = renderer d_latent
SHAP_E_HIDDEN = 8  # renderer MLP width; num_embeddings = 4 projected layers x 8 rows
# diffusers' Shap-E HeunDiscreteScheduler settings (openai/shap-e scheduler config)
SHAP_E_SCHEDULER = dict(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample", use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
# the tiny Shap-E, in the form of SHAP_E_FULL below
SHAP_E_TINY = dict(
    prior=dict(
        num_attention_heads=2,
        attention_head_dim=16,
        embedding_dim=SHAP_E_LATENT,
        num_embeddings=4 * SHAP_E_HIDDEN,  # one row per projected MLP row (4 layers x d_hidden)
        embedding_proj_dim=CROSS_DIM,
        time_embed_dim=4 * SHAP_E_LATENT,
        num_layers=1,
        clip_embed_dim=2 * SHAP_E_LATENT,  # output splits into (noise, variance) halves
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
    ),
    renderer=dict(
        # 93 = NeRF position encoding width
        param_shapes=((SHAP_E_HIDDEN, 93), (SHAP_E_HIDDEN, SHAP_E_HIDDEN), (SHAP_E_HIDDEN, SHAP_E_HIDDEN), (SHAP_E_HIDDEN, SHAP_E_HIDDEN)),
        d_latent=SHAP_E_LATENT,
        d_hidden=SHAP_E_HIDDEN,
        n_output=12,
        background=(255.0, 255.0, 255.0),
    ),
    text=TEXT,
)
# DPT-Hybrid (Intel/dpt-hybrid-midas's structure: BiT bottleneck backbone for the first two
# stages + ViT, "project" readout): 64 px in, stride-16 BiT -> a 4x4 token grid.
DETECTOR_SIZE = 64  # the processor's input size (384 for the real model)
DETECTOR_BIT = dict(
    model_type="bit",
    global_padding="same",
    layer_type="bottleneck",
    depths=[1, 1, 1],
    embedding_size=8,
    hidden_sizes=[8, 16, 32],
    num_groups=4,
    out_features=["stage1", "stage2", "stage3"],
    embedding_dynamic_padding=True,
)
DETECTOR = dict(
    is_hybrid=True,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=37,
    image_size=DETECTOR_SIZE,
    patch_size=16,
    backbone_out_indices=[0, 1, 2, 3],  # the first two are taken from the BiT stages (hybrid)
    neck_hidden_sizes=[8, 16, 32, 32],
    reassemble_factors=[1, 1, 1, 0.5],
    fusion_hidden_size=16,
    backbone_featmap_shape=[1, 32, DETECTOR_SIZE // 16, DETECTOR_SIZE // 16],
)
# MiDaS's image processing: [-1, 1] inputs (mean = std = 0.5), bicubic resize to a square
DETECTOR_PROCESSOR = dict(size={"height": DETECTOR_SIZE, "width": DETECTOR_SIZE}, image_mean=[0.5] * 3,
                          image_std=[0.5] * 3, keep_aspect_ratio=False, do_rescale=True, do_normalize=True)
# The transformers init (std 0.02) leaves the depth head's output ~1e-5 and nearly flat; the
# real network outputs relative disparities in the hundreds. The head's convs are re-drawn with
# fan-in scaling, the last one's weights multiplied by this and its bias set to it: disparities
# near 100 that vary by a few units per image (seed 0: 96..108 on smooth colour fields), enough
# for their image-space gradients to tilt the normals against controlnet_aux's z = 2 pi.
DETECTOR_DEPTH_SCALE = 100.0

# std of the random weights that the diffusers inits would leave at zero (IP K/V, ControlNet
# zero-convs): large enough that an image or control map measurably changes the UNet output.
RANDOM_STD = 0.2


# ----------------------------------------------------------------------------------------------
# The sd15 profile: the real sizes (diffusers' / transformers' configs of the released weights)

SD15_CROSS_DIM = 768  # CLIP ViT-L/14 text width = SD 1.5 cross_attention_dim
SD15_UNET = dict(UNET, sample_size=64, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
                 cross_attention_dim=SD15_CROSS_DIM, attention_head_dim=8, norm_num_groups=32)
SD15_VAE = dict(VAE, block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32, sample_size=512)
# CLIP ViT-L/14 text encoder. The tiny byte-level tokenizer is reused (ids 0..513, its own
# <|startoftext|>/<|endoftext|> ids): the real vocabulary size keeps the embedding table at its
# real size, the rows above 513 are simply never looked up.
SD15_TEXT = dict(TEXT, vocab_size=49408, hidden_size=SD15_CROSS_DIM, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, projection_dim=SD15_CROSS_DIM)
# OpenCLIP ViT-H/14 as h94/IP-Adapter's models/image_encoder (CLIPVisionModelWithProjection, GELU)
SD15_VISION = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
                   image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)
# ip-adapter-plus_sd15: 16 queries of width 768 = 12 heads x 64, depth 4, ff_mult 4
SD15_RESAMPLER = dict(hidden=768, heads=12, queries=16, depth=4, ff_mult=4)

# ----------------------------------------------------------------------------------------------
# The sd21 profile: SD 2.1-base (stabilityai/stable-diffusion-2-1-base's configs), its normal
# ControlNet (built from the UNet, as thibaud/controlnet-sd21-normalbae-diffusers is) and Shap-E

SD21_CROSS_DIM = 1024  # OpenCLIP ViT-H/14 text width = SD 2.x cross_attention_dim
# SD 2.x: 64-wide heads (5, 10, 20, 20 of them), linear projections in the transformer blocks;
# the base (512 px, epsilon-prediction) model does not upcast attention.
SD21_UNET = dict(SD15_UNET, cross_attention_dim=SD21_CROSS_DIM, attention_head_dim=(5, 10, 20, 20),
                 use_linear_projection=True)
SD21_VAE = SD15_VAE  # SD 2.x reuses SD 1.x's 8x KL autoencoder
# OpenCLIP ViT-H/14 text tower as diffusers ships it: 23 of its 24 layers (SD 2.x conditions on
# the penultimate layer), GELU. The byte-level tokenizer is reused as in the sd15 profile.
SD21_TEXT = dict(TEXT, vocab_size=49408, hidden_size=SD21_CROSS_DIM, intermediate_size=4096, num_hidden_layers=23,
                 num_attention_heads=16, projection_dim=512, hidden_act="gelu", layer_norm_eps=1e-5)
# openai/shap-e (text300M): diffusers' conversion-script prior config, the default renderer, and
# the CLIP ViT-L/14 text encoder with projection.
SHAP_E_FULL = dict(
    prior=dict(num_attention_heads=16, attention_head_dim=64, num_layers=24, embedding_dim=1024, num_embeddings=1024,
               additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer", encoder_hid_proj_type=None,
               added_emb_type=None, time_embed_dim=4096, embedding_proj_dim=768, clip_embed_dim=2048),
    renderer=dict(param_shapes=((256, 93), (256, 256), (256, 256), (256, 256)), d_latent=1024, d_hidden=256,
                  n_output=12, background=(255.0, 255.0, 255.0)),
    text=dict(SD15_TEXT, projection_dim=768),
)


@dataclass(frozen=True)
class SizeProfile:
    """The widths of every network one builder profile writes."""

    name: str
    folder: str  # the set's folder in the model cache
    cross_dim: int  # text width = UNet cross_attention_dim = IP token width
    unet: dict
    vae: dict
    text: dict
    vision: Optional[dict]  # the IP-Adapter's image encoder; None: the set has no IP-Adapter
    resampler: Optional[dict]
    ip_weight_name: Optional[str]
    controlnet_cond_channels: Optional[tuple]  # None: diffusers' default (16, 32, 96, 256)
    # std of the random weights the inits leave at zero (IP K/V, ControlNet zero-convs); with
    # random_std_per_fan_in it is divided by sqrt(fan_in), so full-width layers keep unit-scale
    # outputs (an absolute 0.2 on 1280 inputs would push fp16 activations towards overflow)
    random_std: float
    random_std_per_fan_in: bool
    shap_e: Optional[dict]  # sizes of the Shap-E pipeline (SHAP_E_TINY / SHAP_E_FULL); None: none built
    control_detector: bool  # build the DPT depth network


TINY = SizeProfile(
    name="tiny", folder="tiny", cross_dim=CROSS_DIM, unet=UNET, vae=VAE, text=TEXT, vision=VISION, resampler=RESAMPLER,
    ip_weight_name=IP_WEIGHT_NAME, controlnet_cond_channels=CONTROLNET_COND_CHANNELS, random_std=RANDOM_STD,
    random_std_per_fan_in=False, shap_e=SHAP_E_TINY, control_detector=True,
)
SD15 = SizeProfile(
    name="sd15", folder="sd15-random", cross_dim=SD15_CROSS_DIM, unet=SD15_UNET, vae=SD15_VAE, text=SD15_TEXT,
    vision=SD15_VISION, resampler=SD15_RESAMPLER, ip_weight_name="ip-adapter-plus_sd15.safetensors",
    controlnet_cond_channels=None, random_std=1.0, random_std_per_fan_in=True, shap_e=None, control_detector=False,
)
SD21 = SizeProfile(
    name="sd21", folder="sd21-random", cross_dim=SD21_CROSS_DIM, unet=SD21_UNET, vae=SD21_VAE, text=SD21_TEXT,
    vision=None, resampler=None, ip_weight_name=None, controlnet_cond_channels=None, random_std=1.0,
    random_std_per_fan_in=True, shap_e=SHAP_E_FULL, control_detector=False,
)
PROFILES = {p.name: p for p in (TINY, SD15, SD21)}
# The dtype a full-size set is built in when none is asked for (see the module docstring's timings).
DEFAULT_FULL_SIZE_DTYPE = "float16"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ----------------------------------------------------------------------------------------------
# Tokenizer without downloads


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-level alphabet: printable Latin-1 bytes map to themselves, the rest to 256+."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(ord("\xa1"), ord("\xac") + 1)) | set(range(ord("\xae"), ord("\xff") + 1))
    table, shift = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _write_tokenizer(out_dir: Path) -> None:
    """A byte-level CLIPTokenizer with no merges (one token per byte), saved with save_pretrained."""
    from transformers import CLIPTokenizer

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = TEXT["bos_token_id"]
    vocab["<|endoftext|>"] = TEXT["eos_token_id"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab, sort_keys=True))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n")
        # without model_max_length the pipelines overflow (OverflowError: int too big to convert)
        tok = CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=77)
    tok.save_pretrained(out_dir)


# ----------------------------------------------------------------------------------------------
# Marching-cubes tables for Shap-E's mesh decoder

# Corner c of a cell is (c & 1, c >> 1 & 1, c >> 2 & 1) = (dx, dy, dz): the bit order of
# diffusers' MeshDecoder bitmasks. Edge order follows its `_create_flat_edge_indices`:
# 4 x-edges, 4 y-edges, 4 z-edges, each group ordered by the other two coordinates (low first).


def _cube_edges() -> list[tuple[int, int]]:
    edges = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for k in range(4):
            corner = [0, 0, 0]
            corner[u], corner[v] = k & 1, k >> 1
            c = corner[0] + 2 * corner[1] + 4 * corner[2]
            edges.append((c, c + (1 << axis)))
    return edges


def _cube_faces() -> list[list[int]]:
    """The 6 faces, each as its 4 corners in cyclic order."""
    faces = []
    for axis in range(3):
        u, v = [a for a in range(3) if a != axis]
        for side in (0, 1):
            ring = []
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                c = [0, 0, 0]
                c[axis], c[u], c[v] = side, du, dv
                ring.append(c[0] + 2 * c[1] + 4 * c[2])
            faces.append(ring)
    return faces


def marching_cubes_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Triangle tables for diffusers' MeshDecoder: cases [256, 5, 3] (edge ids), masks [256, 5].

    The real `openai/shap-e` renderer ships these as buffers; a freshly built ShapERenderer has
    zeros (no triangles), so the tiny set derives them. For each of the 256 inside/outside corner
    patterns: every cube face crossed by the surface contributes segments between its crossed
    edges (an ambiguous face separates its inside corners, the same rule on both cells sharing
    the face, so the mesh is watertight); the segments close into loops, each loop is fanned
    into triangles, and each triangle is wound so its normal points from inside to outside.
    """
    edges = _cube_edges()
    edge_id = {frozenset(e): i for i, e in enumerate(edges)}
    pos = [torch.tensor([c & 1, c >> 1 & 1, c >> 2 & 1], dtype=torch.float64) for c in range(8)]
    mid = [(pos[a] + pos[b]) / 2 for a, b in edges]
    cases = torch.zeros(256, 5, 3, dtype=torch.long)
    masks = torch.zeros(256, 5, dtype=torch.bool)
    for case in range(256):
        inside = [bool(case >> c & 1) for c in range(8)]
        neighbours: dict[int, list[int]] = {}
        for ring in _cube_faces():
            ring_edges = [edge_id[frozenset((ring[i], ring[(i + 1) % 4]))] for i in range(4)]
            crossed = [i for i in range(4) if inside[ring[i]] != inside[ring[(i + 1) % 4]]]
            if len(crossed) == 2:
                segments = [(ring_edges[crossed[0]], ring_edges[crossed[1]])]
            elif len(crossed) == 4:  # ambiguous face: cut off each inside corner
                segments = [(ring_edges[(i - 1) % 4], ring_edges[i]) for i in range(4) if inside[ring[i]]]
            else:
                segments = []
            for a, b in segments:
                neighbours.setdefault(a, []).append(b)
                neighbours.setdefault(b, []).append(a)
        triangles, seen = [], set()
        for start in sorted(neighbours):
            if start in seen:
                continue
            loop, prev, cur = [start], None, start
            seen.add(start)
            while True:
                nxt = [e for e in neighbours[cur] if e != prev and e not in seen]
                if not nxt:
                    break
                prev, cur = cur, nxt[0]
                loop.append(cur)
                seen.add(cur)
            for k in range(1, len(loop) - 1):
                tri = (loop[0], loop[k], loop[k + 1])
                outward = sum((pos[b] - pos[a]) if inside[a] else (pos[a] - pos[b]) for a, b in (edges[e] for e in tri))
                normal = torch.linalg.cross(mid[tri[1]] - mid[tri[0]], mid[tri[2]] - mid[tri[0]])
                triangles.append(tri if float(normal @ outward) > 0 else (tri[0], tri[2], tri[1]))
        if len(triangles) > cases.shape[1]:  # cannot happen with the rule above (max is 5)
            raise AssertionError(f"marching-cubes case {case} needs {len(triangles)} triangles")
        for k, tri in enumerate(triangles):
            cases[case, k] = torch.tensor(tri)
            masks[case, k] = True
    return cases, masks


# ----------------------------------------------------------------------------------------------
# Builders (each seeds its own generator so components do not depend on build order)


def _seeded(seed: int, offset: int) -> torch.Generator:
    torch.manual_seed(seed * 1000 + offset)  # diffusers/transformers inits use the global RNG
    return torch.Generator().manual_seed(seed * 1000 + offset)


def _random_scale(profile: SizeProfile, fan_in: int) -> float:
    return profile.random_std / fan_in**0.5 if profile.random_std_per_fan_in else profile.random_std


def _randomise_(tensors: list[torch.Tensor], gen: torch.Generator, profile: SizeProfile) -> None:
    """Redraw weights [out, in, ...] as N(0, std^2), std from the profile (fan_in = in * kernel)."""
    with torch.no_grad():
        for t in tensors:
            t.copy_(torch.randn(t.shape, generator=gen) * _random_scale(profile, t[0].numel()))


def _build_base(out: Path, seed: int, profile: SizeProfile, dtype: torch.dtype):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    _seeded(seed, 1)
    unet = UNet2DConditionModel(**profile.unet)
    _seeded(seed, 2)
    vae = AutoencoderKL(**profile.vae)
    _seeded(seed, 3)
    text_encoder = CLIPTextModel(CLIPTextConfig(**profile.text))
    for module in (unet, vae, text_encoder):
        module.to(dtype)  # a no-op in float32; ControlNet.from_unet then copies the saved values
    tok_dir = out / "_tokenizer"
    _write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    shutil.rmtree(tok_dir)
    # SD 1.5 ships a PNDM config; the loader turns it into the DDIM scheduler AnchorDS uses.
    scheduler = PNDMScheduler(**SCHEDULER)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / "base")
    return unet


def resampler_state(gen: torch.Generator, embed_dim: int, profile: SizeProfile = TINY) -> dict[str, torch.Tensor]:
    """IP-Adapter-Plus `image_proj` weights in the original (h94) key layout."""
    R, D = profile.resampler, profile.cross_dim
    H, h, Q = R["hidden"], R["heads"], R["queries"]
    inner = 64 * h  # diffusers fixes dim_head at 64

    def lin(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=gen) / cols**0.5

    sd = {
        "latents": torch.randn(1, Q, H, generator=gen) / H**0.5,
        "proj_in.weight": lin(H, embed_dim),
        "proj_in.bias": torch.zeros(H),
        "proj_out.weight": lin(D, H),
        "proj_out.bias": torch.zeros(D),
        "norm_out.weight": torch.ones(D),
        "norm_out.bias": torch.zeros(D),
    }
    for i in range(R["depth"]):
        p = f"layers.{i}"
        for norm in (f"{p}.0.norm1", f"{p}.0.norm2", f"{p}.1.0"):
            sd[f"{norm}.weight"] = torch.ones(H)
            sd[f"{norm}.bias"] = torch.zeros(H)
        sd[f"{p}.0.to_q.weight"] = lin(inner, H)
        sd[f"{p}.0.to_kv.weight"] = lin(2 * inner, H)
        sd[f"{p}.0.to_out.weight"] = lin(H, inner)
        sd[f"{p}.1.1.weight"] = lin(R["ff_mult"] * H, H)
        sd[f"{p}.1.3.weight"] = lin(H, R["ff_mult"] * H)
    return sd


def ip_kv_layers(unet) -> list[tuple[int, str, int]]:
    """(index, attention module name, hidden width) of every cross-attention of the UNet.

    ip_adapter keys: processors numbered in unet.attn_processors order, attn1 even, attn2 odd
    (the original IP-Adapter ModuleList); only cross-attention gets image K/V projections
    `ip_adapter.<index>.to_{k,v}_ip.weight` [hidden, cross_dim].
    """
    modules = dict(unet.named_modules())
    layers = []
    for index, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            module = name[: -len(".processor")]
            layers.append((index, module, modules[module].to_q.out_features))
    return layers


def _build_ip_adapter(out: Path, seed: int, unet, profile: SizeProfile, dtype: torch.dtype) -> None:
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    _seeded(seed, 4)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**profile.vision))
    encoder.to(dtype).save_pretrained(out / "ip_adapter" / "image_encoder")
    del encoder  # ViT-H/14 is 2.5 GB in fp32: free it before the ControlNet copy of the UNet
    gen = _seeded(seed, 5)
    tensors = {f"image_proj.{k}": v for k, v in resampler_state(gen, profile.vision["hidden_size"], profile).items()}
    D = profile.cross_dim
    for index, _, hidden in ip_kv_layers(unet):
        for kv in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{index}.{kv}.weight"] = torch.randn(hidden, D, generator=gen) * _random_scale(profile, D)
    (out / "ip_adapter").mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(out / "ip_adapter" / profile.ip_weight_name),
              metadata={"format": "pt"})


def _build_controlnet(out: Path, seed: int, unet, profile: SizeProfile, dtype: torch.dtype) -> None:
    from diffusers import ControlNetModel

    gen = _seeded(seed, 6)
    extra = {}
    if profile.controlnet_cond_channels is not None:
        extra["conditioning_embedding_out_channels"] = profile.controlnet_cond_channels
    controlnet = ControlNetModel.from_unet(unet, **extra)
    # from_unet zero-initialises the output convs (a fresh ControlNet is a no-op); random
    # weights make the control map visible in the UNet output, as with trained weights.
    zero_init = [m.weight for m in controlnet.controlnet_down_blocks] + [controlnet.controlnet_mid_block.weight]
    zero_init.append(controlnet.controlnet_cond_embedding.conv_out.weight)
    _randomise_(zero_init, gen, profile)
    controlnet.to(dtype).save_pretrained(out / "controlnet")


def _build_shap_e(out: Path, seed: int, sizes: dict, dtype: torch.dtype = torch.float32) -> None:
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    _seeded(seed, 7)
    prior = PriorTransformer(**sizes["prior"])
    _seeded(seed, 8)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(**sizes["text"]))
    tok_dir = out / "_shap_e_tokenizer"
    _write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    shutil.rmtree(tok_dir)
    _seeded(seed, 9)
    renderer = ShapERenderer(**sizes["renderer"])
    cases, masks = marching_cubes_tables()
    renderer.mesh_decoder.cases.copy_(cases)
    renderer.mesh_decoder.masks.copy_(masks)
    pipe = ShapEPipeline(
        prior=prior,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=HeunDiscreteScheduler(**SHAP_E_SCHEDULER),
        shap_e_renderer=renderer,
    )
    if dtype != torch.float32:  # floating weights only: the marching-cubes tables keep their dtypes
        for module in (prior, text_encoder, renderer):
            module.to(dtype)
    pipe.save_pretrained(out / "shap_e")


def _build_control_detector(out: Path, seed: int) -> None:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    _seeded(seed, 10)
    detector = DPTForDepthEstimation(DPTConfig(backbone_config=dict(DETECTOR_BIT), **DETECTOR))
    gen = _seeded(seed, 11)
    convs = [m for m in detector.head.head if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        # the last conv feeds a ReLU: a positive offset keeps most of the disparity above zero
        convs[-1].weight.mul_(DETECTOR_DEPTH_SCALE)
        convs[-1].bias.fill_(DETECTOR_DEPTH_SCALE)
    detector.save_pretrained(out / "control_detector")
    DPTImageProcessor(**DETECTOR_PROCESSOR).save_pretrained(out / "control_detector")


def _stamp(profile: SizeProfile, seed: int, dtype: str) -> dict:
    # The tiny fp32 stamp predates profiles and is kept as it was, so cached tiny sets stay
    # current and a tiny build stays byte-identical.
    if profile is TINY and dtype == "float32":
        return {"version": TINY_SET_VERSION, "seed": seed}
    return {"version": TINY_SET_VERSION, "seed": seed, "profile": profile.name, "dtype": dtype}


def build_set(out_dir: Path, seed: int = 0, profile: SizeProfile = TINY, dtype: str = "float32") -> Path:
    """Write every network of `profile` under `out_dir` in the Hugging Face layout (deterministic).

    `dtype` is the dtype of the saved weights ("float32" or "float16"); the random draws are
    made in float32 either way.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch_dtype = DTYPES[dtype]
    rng_state = torch.get_rng_state()
    try:
        unet = _build_base(out_dir, seed, profile, torch_dtype)
        if profile.vision is not None:
            _build_ip_adapter(out_dir, seed, unet, profile, torch_dtype)
        _build_controlnet(out_dir, seed, unet, profile, torch_dtype)
        del unet
        if profile.shap_e is not None:
            _build_shap_e(out_dir, seed, profile.shap_e, torch_dtype)
        if profile.control_detector:
            _build_control_detector(out_dir, seed)
    finally:
        torch.set_rng_state(rng_state)  # building must not disturb the caller's random stream
    atomic_write_json(out_dir / STAMP_FILE, _stamp(profile, seed, dtype))
    return out_dir


def build_tiny_set(out_dir: Path, seed: int = 0) -> Path:
    """Write every tiny network under `out_dir` in the Hugging Face layout (deterministic)."""
    return build_set(out_dir, seed, TINY)


# ----------------------------------------------------------------------------------------------
# On-demand cache


def model_cache_root() -> Path:
    """Where built-in sets are cached: $ANCHORDS_MODEL_CACHE, else <repo>/.cache/models."""
    env = os.environ.get("ANCHORDS_MODEL_CACHE")
    return Path(env) if env else REPO_ROOT / ".cache" / "models"


def _is_current(folder: Path, seed: int, profile: SizeProfile = TINY, dtype: Optional[str] = "float32") -> bool:
    """Whether `folder` holds a finished build of this version, seed and profile (any dtype if None)."""
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    dtypes = DTYPES if dtype is None else (dtype,)
    return any(stamp == _stamp(profile, seed, d) for d in dtypes)


def _ensure(cache_root: Optional[Path], seed: int, profile: SizeProfile, dtype: Optional[str], build) -> Path:
    """The cached folder of `profile`, built by `build(out, seed)` first if missing or stale.

    Concurrent workers are safe: a file lock serialises builders, the set is built in a
    temporary folder beside the target and renamed into place, so a reader sees either no
    set or a complete one.
    """
    from filelock import FileLock

    root = Path(cache_root) if cache_root is not None else model_cache_root()
    name = profile.folder
    target = root / name
    if _is_current(target, seed, profile, dtype):
        return target
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{name}.lock")):
        if _is_current(target, seed, profile, dtype):  # another worker built it while we waited
            return target
        print(f"[models] building the embedded {name} model set in {target} (seed {seed}) ...", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.build.", dir=root))
        honour_umask(tmp)  # the folder readable as a plain mkdir makes it, not 0700
        try:
            build(tmp, seed)
            if target.exists():  # stale: move aside first so the rename below is atomic
                old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=root))
                os.replace(target, old / name)
                shutil.rmtree(old, ignore_errors=True)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ensure_tiny_set(cache_root: Path | None = None, seed: int = 0) -> Path:
    """The folder of the tiny set (`<cache>/tiny`), building it first if it is missing or stale."""
    # looked up at call time (not bound here) so tests can wrap build_tiny_set
    return _ensure(cache_root, seed, TINY, "float32", lambda out, s: build_tiny_set(out, s))


def ensure_random_set(profile: SizeProfile, cache_root: Path | None = None, seed: int = 0,
                      dtype: Optional[str] = None) -> Path:
    """The folder of a full-size random set (`<cache>/<profile.folder>`), building it if missing or stale.

    dtype None accepts a cached build of any dtype (the loader casts to the run's dtype) and
    builds DEFAULT_FULL_SIZE_DTYPE when there is none.
    """
    build_dtype = dtype or DEFAULT_FULL_SIZE_DTYPE
    return _ensure(cache_root, seed, profile, dtype, lambda out, s: build_set(out, s, profile, build_dtype))


def ensure_sd15_random_set(cache_root: Path | None = None, seed: int = 0, dtype: Optional[str] = None) -> Path:
    """The `sd15-random` set's folder (see ensure_random_set)."""
    return ensure_random_set(SD15, cache_root, seed, dtype)


def ensure_sd21_random_set(cache_root: Path | None = None, seed: int = 0, dtype: Optional[str] = None) -> Path:
    """The `sd21-random` set's folder (see ensure_random_set)."""
    return ensure_random_set(SD21, cache_root, seed, dtype)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m generators.models.tiny", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a random-weight set into DIR (default: the model cache)")
    b.add_argument("dir", nargs="?", type=Path, default=None)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--profile", choices=sorted(PROFILES), default="tiny",
                   help="tiny: the `tiny` set; sd15 / sd21: the full-size `sd15-random` / `sd21-random` sets")
    b.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                   help=f"dtype of the saved weights (default: float32 for tiny, {DEFAULT_FULL_SIZE_DTYPE} for the full-size sets)")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.dtype is None:
        args.dtype = "float32" if profile is TINY else DEFAULT_FULL_SIZE_DTYPE
    if args.dir is None:
        if profile is TINY and args.dtype == "float32":
            path = ensure_tiny_set(seed=args.seed)
        else:
            path = _ensure(None, args.seed, profile, args.dtype, lambda out, s: build_set(out, s, profile, args.dtype))
    else:
        print(f"[models] building the {profile.name} model set in {args.dir} (seed {args.seed}, {args.dtype}) ...",
              file=sys.stderr, flush=True)
        path = build_set(args.dir, args.seed, profile, args.dtype)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
