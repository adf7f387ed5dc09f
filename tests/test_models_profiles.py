"""Size profiles of the random-weight builder: the sd15 profile has SD 1.5's real sizes.

The full-size networks are instantiated on the `meta` device (shapes only, no memory), so these
checks are cheap; the sd15 set itself (~6.5 GB) is never built here. Expected counts are the
published sizes of the released networks, or derived from their architecture by hand below.
"""

from __future__ import annotations

import json

import pytest
import torch

from generators.models import tiny
from generators.models.tiny import SD15, SD21, TINY, ip_kv_layers, resampler_state


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def sd15_unet():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**SD15.unet)


def test_sd15_unet_has_the_published_sd15_size_and_structure(sd15_unet):
    assert sd15_unet.device.type == "meta"  # nothing was allocated
    assert _count(sd15_unet) == 859_520_964
    assert [type(b).__name__ for b in sd15_unet.up_blocks] == ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3
    assert sd15_unet.config.sample_size * 8 == 512  # 64x64 latents for 512 px VAE input


def test_sd15_vae_and_text_encoder_have_the_published_sizes():
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        vae = AutoencoderKL(**SD15.vae)
        text = CLIPTextModel(CLIPTextConfig(**SD15.text))
    assert _count(vae) == 83_653_863
    assert vae.config.scaling_factor == pytest.approx(0.18215)
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8  # 512 px -> 64x64 latents
    assert text.config.vocab_size == 49_408
    assert _count(text) == 123_060_480  # CLIP ViT-L/14 text tower


def test_sd15_text_vocabulary_covers_the_reused_byte_level_tokenizer(tmp_path):
    from transformers import CLIPTokenizer

    tiny._write_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    ids = tok(["a red apple, ÿ€ 🍎"], padding="max_length", max_length=77).input_ids[0]
    assert max(ids) < SD15.text["vocab_size"]
    assert (SD15.text["bos_token_id"], SD15.text["eos_token_id"]) == (ids[0], tok.eos_token_id)
    assert SD15.text["max_position_embeddings"] == tok.model_max_length == 77


def _vit_params(width: int, layers: int, mlp: int, patch: int, image: int, proj: int) -> int:
    """Parameters of a CLIP ViT image tower with projection (bias-free patch conv and projection)."""
    tokens = (image // patch) ** 2 + 1
    layer = 4 * (width * width + width) + 2 * 2 * width + (width * mlp + mlp) + (mlp * width + width)
    return 3 * patch * patch * width + width + tokens * width + 2 * width + layers * layer + 2 * width + width * proj


def test_sd15_image_encoder_is_vit_h14_as_open_clip_builds_it():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**SD15.vision))
    expected = _vit_params(width=1280, layers=32, mlp=5120, patch=14, image=224, proj=1024)
    assert expected == 632_076_800
    assert _count(encoder) == expected
    open_clip = pytest.importorskip("open_clip")
    from open_clip.factory import get_model_config
    from open_clip.model import _build_vision_tower

    cfg = get_model_config("ViT-H-14")
    with torch.device("meta"):
        visual = _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"])
    assert _count(visual) == expected  # the same tower, counted in OpenCLIP's own implementation


def test_sd15_ip_adapter_plus_sizes_and_the_released_finetune_layer(sd15_unet):
    layers = ip_kv_layers(sd15_unet)
    assert len(layers) == 16  # every attn2 of SD 1.5: 6 down, 1 mid, 9 up
    assert all(index % 2 == 1 for index, _, _ in layers)  # attn2 = odd entries of the processor list
    up3 = [(name, hidden) for _, name, hidden in layers if name.startswith("up_blocks.3.")]
    assert [h for _, h in up3] == [320] * 3
    # anchords-method.md: to_k_ip + to_v_ip (768 -> 320) of up_blocks.3's 3 attn2 = 1,474,560
    assert sum(2 * hidden * SD15.cross_dim for _, hidden in up3) == 1_474_560


def test_sd15_resampler_loads_into_diffusers_ip_adapter_plus_projection():
    from diffusers.loaders.unet import UNet2DConditionLoadersMixin

    state = resampler_state(torch.Generator().manual_seed(0), SD15.vision["hidden_size"], SD15)
    width, queries, depth, ff, inp, out = 768, 16, 4, 4, 1280, 768
    per_layer = 3 * 2 * width + 4 * width * width + 2 * ff * width * width  # 3 norms, q/kv/out, ff
    assert sum(t.numel() for t in state.values()) == (
        queries * width + inp * width + width + width * out + out + 2 * out + depth * per_layer
    )
    # the converter load_ip_adapter uses: it infers every size from the h94-layout keys
    proj = UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers(None, state, low_cpu_mem_usage=False)
    assert type(proj).__name__ == "IPAdapterPlusImageProjection"
    assert _count(proj) == sum(t.numel() for t in state.values())
    assert len(proj.layers) == depth and proj.layers[0].attn.heads == 12
    with torch.no_grad():
        tokens = proj(torch.randn(2, 257, inp))  # ViT-H/14 penultimate hidden states [B, 257, 1280]
    assert tokens.shape == (2, queries, out)


def test_sd15_controlnet_is_the_unet_encoder_with_default_conditioning_channels(sd15_unet):
    from diffusers import ControlNetModel

    with torch.device("meta"):
        controlnet = ControlNetModel.from_unet(sd15_unet, load_weights_from_unet=False)
    assert tuple(controlnet.config.conditioning_embedding_out_channels) == (16, 32, 96, 256)
    assert SD15.controlnet_cond_channels is None  # the builder passes diffusers' default through
    shared = ("conv_in", "time_proj", "time_embedding", "down_blocks", "mid_block")
    for name in shared:
        assert _count(getattr(controlnet, name)) == _count(getattr(sd15_unet, name)), name
    extra = _count(controlnet) - sum(_count(getattr(sd15_unet, n)) for n in shared)
    zero_convs = sum(c * c + c for c in [320] * 4 + [640] * 3 + [1280] * 6)  # 12 down + 1 mid, 1x1
    cond = controlnet.controlnet_cond_embedding
    assert extra == zero_convs + _count(cond)


def test_random_weight_scale_follows_the_profile():
    # tiny: the absolute std its tests were tuned with; sd15: unit-scale outputs at full width
    assert tiny._random_scale(TINY, 1280) == tiny.RANDOM_STD
    assert tiny._random_scale(SD15, 1280) == pytest.approx(1280**-0.5)
    gen = torch.Generator().manual_seed(0)
    w = torch.zeros(1280, 768, 1, 1)
    tiny._randomise_([w], gen, SD15)
    x = torch.randn(4096, 768, generator=gen)
    assert (x @ w[:, :, 0, 0].T).std().item() == pytest.approx(1.0, rel=0.05)


def test_sd15_random_set_yaml_runs_the_paper_settings_from_a_ball():
    from generators.methods import resolve_run_config
    from generators.models.spec import load_set_spec
    from generators.train import required_components

    spec = load_set_spec("sd15-random")
    assert spec.embedded == "generators.models.tiny:ensure_sd15_random_set"
    assert spec.ip_adapter.weight_name == SD15.ip_weight_name
    assert spec.shap_e is None and spec.vae_input_size == 512 and spec.cuda_dtype == "float16"
    for method in ("sds", "anchords-ipa-finetune", "anchords-cn"):
        cfg = resolve_run_config(method, prompt="a red apple", models="sd15-random")
        assert (cfg.camera.width, cfg.camera.height, cfg.camera.batch_size) == (1024, 1024, 4)
        assert cfg.guidance.vae_input_size == 512
        assert (cfg.init.kind, cfg.init.ball_points) == ("ball", 100_000)
        assert "shap_e" not in required_components(cfg)
        assert all(spec.component(c) is not None for c in required_components(cfg))


def test_sd15_cache_accepts_either_dtype_and_never_a_tiny_folder(tmp_path, monkeypatch):
    builds = []

    def fake_build(out, seed=0, profile=TINY, dtype="float32"):  # the stamp only: no 6.5 GB build
        builds.append((profile.name, dtype))
        out.mkdir(parents=True, exist_ok=True)
        (out / tiny.STAMP_FILE).write_text(json.dumps(tiny._stamp(profile, seed, dtype)))
        return out

    monkeypatch.setattr(tiny, "build_set", fake_build)
    target = tmp_path / "sd15-random"
    target.mkdir()
    (target / tiny.STAMP_FILE).write_text(json.dumps(tiny._stamp(TINY, 0, "float32")))
    assert tiny.ensure_sd15_random_set(tmp_path) == target
    assert builds == [("sd15", "float16")]  # a tiny stamp is stale for sd15; fp16 halves the disk
    (target / tiny.STAMP_FILE).write_text(json.dumps(tiny._stamp(SD15, 0, "float32")))
    assert tiny.ensure_sd15_random_set(tmp_path) == target  # any dtype will do for the loader
    assert len(builds) == 1
    tiny.ensure_sd15_random_set(tmp_path, dtype="bfloat16")
    assert builds[-1] == ("sd15", "bfloat16") and len(builds) == 2
    assert json.loads((target / tiny.STAMP_FILE).read_text())["profile"] == "sd15"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".sd15-random.lock", "sd15-random"]


# ----------------------------------------------------------------------------------------------
# sd21: SD 2.1-base, its OpenCLIP-H text tower, its normal ControlNet, Shap-E text300M


@pytest.fixture(scope="module")
def sd21_unet():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**SD21.unet)


def test_sd21_unet_has_the_published_sd21_base_size_and_64_wide_heads(sd21_unet):
    assert _count(sd21_unet) == 865_910_724  # stabilityai/stable-diffusion-2-1-base unet
    attn = sd21_unet.down_blocks[0].attentions[0]
    assert type(attn.proj_in).__name__ == "Linear"  # use_linear_projection
    heads = [b.attentions[0].transformer_blocks[0].attn2 for b in sd21_unet.down_blocks[:3]]
    assert [(a.heads, a.inner_dim // a.heads) for a in heads] == [(5, 64), (10, 64), (20, 64)]
    assert heads[0].to_k.in_features == 1024  # OpenCLIP-H text width


def test_sd21_text_encoder_is_openclip_h_without_its_last_layer():
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        text = CLIPTextModel(CLIPTextConfig(**SD21.text))
    assert _count(text) == 340_387_840  # the published SD 2.x text_encoder
    assert text.config.hidden_size == 1024 and text.config.num_hidden_layers == 23
    assert text.config.hidden_act == "gelu"


def test_sd21_controlnet_matches_the_unet_and_shap_e_has_text300m_sizes(sd21_unet):
    from diffusers import ControlNetModel, PriorTransformer
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with torch.device("meta"):
        controlnet = ControlNetModel.from_unet(sd21_unet, load_weights_from_unet=False)
        prior = PriorTransformer(**tiny.SHAP_E_FULL["prior"])
        renderer = ShapERenderer(**tiny.SHAP_E_FULL["renderer"])
        shap_text = CLIPTextModelWithProjection(CLIPTextConfig(**tiny.SHAP_E_FULL["text"]))
    assert controlnet.config.cross_attention_dim == 1024 and controlnet.config.use_linear_projection
    assert _count(controlnet.down_blocks) == _count(sd21_unet.down_blocks)
    assert SD21.shap_e is tiny.SHAP_E_FULL and SD21.vision is None  # no IP-Adapter in the sd21 sets
    # the prior's 1024 x 1024 latent projects onto the renderer MLP's 4 x 256 weight rows
    assert prior.config.num_embeddings == sum(rows for rows, _ in renderer.config.param_shapes)
    assert prior.config.embedding_proj_dim == shap_text.config.projection_dim == 768
    assert 300e6 < _count(prior) < 320e6  # text300M


def test_sd21_random_set_yaml_runs_the_paper_settings_with_its_own_finetune_layer():
    from generators.methods import resolve_run_config
    from generators.models.spec import load_set_spec
    from generators.train import required_components

    spec = load_set_spec("sd21-random")
    real = load_set_spec("sd21")
    assert spec.embedded == "generators.models.tiny:ensure_sd21_random_set"
    assert spec.ip_adapter is None and spec.shap_e is not None
    assert (spec.finetune_layer, spec.vae_input_size) == (real.finetune_layer, real.vae_input_size)
    for method in ("anchords-cn", "anchords-cn-finetune", "vsd"):
        cfg = resolve_run_config(method, prompt="a red apple", models="sd21-random")
        assert (cfg.camera.width, cfg.camera.batch_size, cfg.guidance.vae_input_size) == (1024, 4, 512)
        assert cfg.init.kind == "ball"
        assert all(spec.component(c) is not None for c in required_components(cfg))
