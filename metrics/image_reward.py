"""ImageReward-v1.0 on transformers' BLIP modules, loaded from the original `ImageReward.pt`.

ImageReward (THUDM/ImageReward, ImageReward/ImageReward.py) is BLIP_Pretrain(vit='large',
image_size=224): a ViT-L/16 image encoder, a BERT-base text encoder whose every layer
cross-attends to the image tokens, and an MLP head on the text [CLS] feature:

    Linear(768, 1024) Dropout(0.2) Linear(1024, 128) Dropout(0.2) Linear(128, 64) Dropout(0.1)
    Linear(64, 16) Linear(16, 1)          # no activations (they are commented out upstream)
    reward = (raw - reward_mean) / reward_std   # 0.16717362830052426, 1.0333394966054072

transformers' `BlipVisionModel` and `BlipTextModel` are the same architecture family (fused qkv
ViT with pre-norm; BERT with cross-attention, no token-type embeddings), so the checkpoint maps
onto them by renaming keys only (`KEY_MAP` below). Text: the `bert-base-uncased` tokenizer with
BLIP's two added tokens ([DEC], [ENC]), padded/truncated to 35 tokens. Images: resize the
shorter side to the encoder's size with PIL bicubic, centre crop, [0, 1], CLIP mean/std.

The tiny variant for tests is a checkpoint of the same family written with the *original* key
names (`build_tiny_image_reward`), so it goes through the very same loader.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor, nn

from generators.errors import UserError

# ----------------------------------------------------------------------------------------------
# Original checkpoint key -> our module key. First match wins; every key of the checkpoint must
# match a rule here or in IGNORED_KEYS.

_V = r"^blip\.visual_encoder\."
_T = r"^blip\.text_encoder\."
_L = _T + r"encoder\.layer\.(\d+)\."
KEY_MAP: list[tuple[str, str]] = [
    # BLIP ViT (timm-style) -> BlipVisionModel
    (_V + r"cls_token$", r"vision.embeddings.class_embedding"),
    (_V + r"pos_embed$", r"vision.embeddings.position_embedding"),
    (_V + r"patch_embed\.proj\.(weight|bias)$", r"vision.embeddings.patch_embedding.\1"),
    (_V + r"blocks\.(\d+)\.norm1\.(weight|bias)$", r"vision.encoder.layers.\1.layer_norm1.\2"),
    (_V + r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", r"vision.encoder.layers.\1.self_attn.qkv.\2"),
    (_V + r"blocks\.(\d+)\.attn\.proj\.(weight|bias)$", r"vision.encoder.layers.\1.self_attn.projection.\2"),
    (_V + r"blocks\.(\d+)\.norm2\.(weight|bias)$", r"vision.encoder.layers.\1.layer_norm2.\2"),
    (_V + r"blocks\.(\d+)\.mlp\.(fc1|fc2)\.(weight|bias)$", r"vision.encoder.layers.\1.mlp.\2.\3"),
    (_V + r"norm\.(weight|bias)$", r"vision.post_layernorm.\1"),
    # BLIP med.py BertModel (add_pooling_layer=False) -> BlipTextModel: same names
    (_T + r"embeddings\.(word_embeddings|position_embeddings)\.weight$", r"text.embeddings.\1.weight"),
    (_T + r"embeddings\.LayerNorm\.(weight|bias)$", r"text.embeddings.LayerNorm.\1"),
    (_L + r"(attention|crossattention)\.self\.(query|key|value)\.(weight|bias)$",
     r"text.encoder.layer.\1.\2.self.\3.\4"),
    (_L + r"(attention|crossattention)\.output\.(dense|LayerNorm)\.(weight|bias)$",
     r"text.encoder.layer.\1.\2.output.\3.\4"),
    (_L + r"intermediate\.dense\.(weight|bias)$", r"text.encoder.layer.\1.intermediate.dense.\2"),
    (_L + r"output\.(dense|LayerNorm)\.(weight|bias)$", r"text.encoder.layer.\1.output.\2.\3"),
    # the reward head (nn.Sequential indices kept: 1, 3, 5 are dropouts)
    (r"^mlp\.layers\.(0|2|4|6|7)\.(weight|bias)$", r"head.\1.\2"),
]
# In the checkpoint but unused by the score (BLIP_Pretrain's contrastive projections, and the
# position-id buffer that old transformers versions saved).
IGNORED_KEYS = [
    r"^blip\.vision_proj\.(weight|bias)$",
    r"^blip\.text_proj\.(weight|bias)$",
    r"^blip\.text_encoder\.embeddings\.position_ids$",
]
HEAD_LINEAR_INDICES = (0, 2, 4, 6, 7)
HEAD_DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}  # upstream values; inactive in eval mode
BLIP_ADDED_TOKENS = {"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]}  # init_tokenizer()
BLIP_PRETRAIN_EMBED_DIM = 256  # vision_proj / text_proj width (only for the tiny checkpoint's extras)


def map_original_key(key: str) -> Optional[str]:
    """Our module key for one original key, or None when no rule matches."""
    for pattern, target in KEY_MAP:
        if re.match(pattern, key):
            return re.sub(pattern, target, key)
    return None


def map_state_dict(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """-> (mapped state dict, ignored original keys, unmapped original keys)."""
    mapped: dict[str, Tensor] = {}
    ignored, unmapped = [], []
    for key, value in state.items():
        if any(re.match(p, key) for p in IGNORED_KEYS):
            ignored.append(key)
            continue
        target = map_original_key(key)
        if target is None:
            unmapped.append(key)
        else:
            mapped[target] = value
    return mapped, sorted(ignored), sorted(unmapped)


# ----------------------------------------------------------------------------------------------
# The model


class ImageRewardModel(nn.Module):
    """BLIP vision + cross-attending BLIP text encoder + ImageReward's linear head."""

    def __init__(self, vision_config, text_config, head_widths: tuple[int, ...]):
        super().__init__()
        from transformers import BlipTextModel, BlipVisionModel

        if len(head_widths) != 4:
            raise ValueError(f"ImageReward's head has 4 hidden widths, got {head_widths}")
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        widths = (text_config.hidden_size, *head_widths, 1)
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(w_in, w_out))
            if 2 * i + 1 in HEAD_DROPOUT:
                layers.append(nn.Dropout(HEAD_DROPOUT[2 * i + 1]))
        self.head = nn.Sequential(*layers)

    def forward(self, pixel_values: Tensor, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """pixel_values [B, 3, S, S] (normalised), input_ids / attention_mask [B, L] -> raw [B]."""
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state  # [B, 1 + P, Dv]
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.text(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts,
        )
        cls = out.last_hidden_state[:, 0, :].float()  # [B, Dt]
        return self.head(cls).squeeze(-1)


def head_widths_from_state(state: dict[str, Tensor]) -> tuple[int, ...]:
    """The 4 hidden widths of the head, read from the original checkpoint's shapes."""
    try:
        return tuple(int(state[f"mlp.layers.{i}.weight"].shape[0]) for i in HEAD_LINEAR_INDICES[:4])
    except KeyError as e:
        raise UserError(f"ImageReward checkpoint has no reward head key {e} (is it ImageReward.pt?)") from None


def text_config_from_med(med: dict, encoder_width: int, tokenizer=None):
    """BlipTextConfig from BLIP's med_config.json (a BertConfig with add_cross_attention).

    Special-token ids come from the tokenizer when given (they do not affect the score)."""
    from transformers import BlipTextConfig

    if not med.get("add_cross_attention", False):
        raise UserError("med_config.json must set add_cross_attention: true (BLIP's multimodal text encoder)")
    required = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                "max_position_embeddings")
    missing = [k for k in required if k not in med]
    if missing:
        raise UserError(f"med_config.json lacks {', '.join(missing)}")
    return BlipTextConfig(
        vocab_size=med["vocab_size"],
        hidden_size=med["hidden_size"],
        encoder_hidden_size=encoder_width,  # BLIP_Pretrain sets encoder_width = vision width
        intermediate_size=med["intermediate_size"],
        num_hidden_layers=med["num_hidden_layers"],
        num_attention_heads=med["num_attention_heads"],
        max_position_embeddings=med["max_position_embeddings"],
        hidden_act=med.get("hidden_act", "gelu"),
        layer_norm_eps=med.get("layer_norm_eps", 1e-12),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=med.get("pad_token_id", 0),
        bos_token_id=getattr(tokenizer, "bos_token_id", None),  # BLIP's [DEC]
        eos_token_id=getattr(tokenizer, "sep_token_id", None),
        sep_token_id=getattr(tokenizer, "sep_token_id", None),
        is_decoder=True,  # builds the cross-attention layers; forward runs bidirectionally
    )


def vision_config_from_dict(vision: dict):
    from transformers import BlipVisionConfig

    return BlipVisionConfig(**vision)


def load_original_weights(model: ImageRewardModel, state: dict[str, Tensor]) -> dict:
    """Copy an original-layout state dict into `model`; UserError naming every problem key."""
    mapped, ignored, unmapped = map_state_dict(state)
    if unmapped:
        raise UserError(
            f"ImageReward checkpoint has {len(unmapped)} key(s) with no mapping onto the transformers "
            f"modules: {', '.join(unmapped[:20])}{' ...' if len(unmapped) > 20 else ''}"
        )
    target = model.state_dict()
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise UserError(
            f"ImageReward checkpoint lacks {len(missing)} weight(s) the model needs: "
            f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    extra = sorted(set(mapped) - set(target))
    if extra:  # a rule produced a name the model does not have (e.g. more layers than configured)
        raise UserError(f"ImageReward checkpoint has weights for modules the configured model lacks: "
                        f"{', '.join(extra[:20])} (check the model set's 'vision' settings)")
    bad = [f"{k}: checkpoint {tuple(mapped[k].shape)} vs model {tuple(target[k].shape)}"
           for k in target if tuple(mapped[k].shape) != tuple(target[k].shape)]
    if bad:
        raise UserError("ImageReward checkpoint shapes do not match the configured model: " + "; ".join(bad[:10]))
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in mapped.items()}, strict=True)
    return {"mapped": len(mapped), "ignored": ignored}


# ----------------------------------------------------------------------------------------------
# Scorer


@dataclass
class ImageRewardScorer:
    """prompt + images -> standardised ImageReward scores (what T3Bench calls model.score)."""

    model: ImageRewardModel
    tokenizer: Any
    image_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    max_text_length: int
    reward_mean: float
    reward_std: float
    device: torch.device
    info: dict = field(default_factory=dict)  # id, revision, files: recorded with every score

    def preprocess(self, images: np.ndarray) -> Tensor:
        """uint8 [B, H, W, 3] -> normalised [B, 3, S, S] (ImageReward's _transform(224))."""
        from PIL import Image

        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
        s = self.image_size
        out = []
        for img in images:
            pil = Image.fromarray(img)
            w, h = pil.size
            # torchvision Resize(int): the shorter side becomes s, the other int(s * long / short)
            size = (s, int(s * h / w)) if w <= h else (int(s * w / h), s)
            if size != (w, h):
                pil = pil.resize(size, Image.BICUBIC)
            left, top = int(round((size[0] - s) / 2.0)), int(round((size[1] - s) / 2.0))
            pil = pil.crop((left, top, left + s, top + s))
            out.append(torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0))
        x = torch.stack(out).permute(0, 3, 1, 2)  # [B, 3, S, S]
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (x - mean) / std

    def tokenize(self, prompt: str) -> tuple[Tensor, Tensor]:
        tok = self.tokenizer(prompt, padding="max_length", truncation=True, max_length=self.max_text_length,
                             return_tensors="pt")
        return tok.input_ids, tok.attention_mask  # [1, L] each

    @torch.no_grad()
    def score(self, prompt: str, images: np.ndarray) -> Tensor:
        """uint8 [B, H, W, 3] -> standardised rewards [B] (float64, on the CPU)."""
        pixels = self.preprocess(images).to(self.device)
        ids, mask = self.tokenize(prompt)
        b = pixels.shape[0]
        raw = self.model(pixels, ids.to(self.device).expand(b, -1), mask.to(self.device).expand(b, -1))
        return ((raw.double() - self.reward_mean) / self.reward_std).cpu()


def load_tokenizer(folder: Path):
    """bert-base-uncased (or the tiny WordPiece vocab) plus BLIP's added [DEC] / [ENC] tokens."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(str(folder))
    tokenizer.add_special_tokens({"bos_token": BLIP_ADDED_TOKENS["bos_token"]})
    tokenizer.add_special_tokens({"additional_special_tokens": BLIP_ADDED_TOKENS["additional_special_tokens"]})
    return tokenizer


def load_image_reward(
    checkpoint: Path, med_config: Path, tokenizer_dir: Path, settings: dict, device: torch.device,
    info: Optional[dict] = None,
) -> ImageRewardScorer:
    """Build the scorer from the original files. `settings` is the model set's image_reward
    section: vision (BlipVisionConfig kwargs), max_text_length, reward_mean, reward_std,
    image_mean, image_std."""
    try:
        med = json.loads(Path(med_config).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read ImageReward med_config {med_config}: {e}") from e
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable, truncated, or not a plain tensor dict
        raise UserError(f"cannot read ImageReward checkpoint {checkpoint}: {e}") from e
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError(f"{checkpoint} is not a flat state dict of tensors (ImageReward.pt is one)")
    try:
        tokenizer = load_tokenizer(Path(tokenizer_dir))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the ImageReward tokenizer from {tokenizer_dir}: {e}") from e
    vision_cfg = vision_config_from_dict(settings["vision"])
    text_cfg = text_config_from_med(med, vision_cfg.hidden_size, tokenizer)
    model = ImageRewardModel(vision_cfg, text_cfg, head_widths_from_state(state))
    load_record = load_original_weights(model, state)
    if len(tokenizer) != text_cfg.vocab_size:
        raise UserError(f"tokenizer at {tokenizer_dir} has {len(tokenizer)} tokens (with BLIP's [DEC], [ENC]); "
                        f"the ImageReward text encoder expects {text_cfg.vocab_size}")
    model.eval().requires_grad_(False).to(device)
    record = dict(info or {})
    record["ignored_checkpoint_keys"] = load_record["ignored"]
    return ImageRewardScorer(
        model=model,
        tokenizer=tokenizer,
        image_size=int(vision_cfg.image_size),
        image_mean=tuple(settings["image_mean"]),
        image_std=tuple(settings["image_std"]),
        max_text_length=int(settings["max_text_length"]),
        reward_mean=float(settings["reward_mean"]),
        reward_std=float(settings["reward_std"]),
        device=torch.device(device),
        info=record,
    )


# ----------------------------------------------------------------------------------------------
# The original checkpoint layout (written from BLIP's own module names, independently of KEY_MAP)
# and the tiny checkpoint built from it.


def original_layout(vision: dict, med: dict, head_widths: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Every key of an ImageReward.pt of this size -> its shape, with the original names."""
    dv, dt, dff = vision["hidden_size"], med["hidden_size"], med["intermediate_size"]
    patch, size = vision["patch_size"], vision["image_size"]
    shapes: dict[str, tuple[int, ...]] = {
        "blip.visual_encoder.cls_token": (1, 1, dv),
        "blip.visual_encoder.pos_embed": (1, (size // patch) ** 2 + 1, dv),
        "blip.visual_encoder.patch_embed.proj.weight": (dv, 3, patch, patch),
        "blip.visual_encoder.patch_embed.proj.bias": (dv,),
        "blip.visual_encoder.norm.weight": (dv,),
        "blip.visual_encoder.norm.bias": (dv,),
    }
    for i in range(vision["num_hidden_layers"]):
        b = f"blip.visual_encoder.blocks.{i}"
        shapes.update({
            f"{b}.norm1.weight": (dv,), f"{b}.norm1.bias": (dv,),
            f"{b}.attn.qkv.weight": (3 * dv, dv), f"{b}.attn.qkv.bias": (3 * dv,),
            f"{b}.attn.proj.weight": (dv, dv), f"{b}.attn.proj.bias": (dv,),
            f"{b}.norm2.weight": (dv,), f"{b}.norm2.bias": (dv,),
            f"{b}.mlp.fc1.weight": (vision["intermediate_size"], dv), f"{b}.mlp.fc1.bias": (vision["intermediate_size"],),
            f"{b}.mlp.fc2.weight": (dv, vision["intermediate_size"]), f"{b}.mlp.fc2.bias": (dv,),
        })
    t = "blip.text_encoder"
    shapes.update({
        f"{t}.embeddings.word_embeddings.weight": (med["vocab_size"], dt),
        f"{t}.embeddings.position_embeddings.weight": (med["max_position_embeddings"], dt),
        f"{t}.embeddings.LayerNorm.weight": (dt,), f"{t}.embeddings.LayerNorm.bias": (dt,),
    })
    for i in range(med["num_hidden_layers"]):
        lay = f"{t}.encoder.layer.{i}"
        for att, kv_width in (("attention", dt), ("crossattention", dv)):
            shapes.update({
                f"{lay}.{att}.self.query.weight": (dt, dt), f"{lay}.{att}.self.query.bias": (dt,),
                f"{lay}.{att}.self.key.weight": (dt, kv_width), f"{lay}.{att}.self.key.bias": (dt,),
                f"{lay}.{att}.self.value.weight": (dt, kv_width), f"{lay}.{att}.self.value.bias": (dt,),
                f"{lay}.{att}.output.dense.weight": (dt, dt), f"{lay}.{att}.output.dense.bias": (dt,),
                f"{lay}.{att}.output.LayerNorm.weight": (dt,), f"{lay}.{att}.output.LayerNorm.bias": (dt,),
            })
        shapes.update({
            f"{lay}.intermediate.dense.weight": (dff, dt), f"{lay}.intermediate.dense.bias": (dff,),
            f"{lay}.output.dense.weight": (dt, dff), f"{lay}.output.dense.bias": (dt,),
            f"{lay}.output.LayerNorm.weight": (dt,), f"{lay}.output.LayerNorm.bias": (dt,),
        })
    widths = (dt, *head_widths, 1)
    for idx, w_in, w_out in zip(HEAD_LINEAR_INDICES, widths[:-1], widths[1:]):
        shapes[f"mlp.layers.{idx}.weight"] = (w_out, w_in)
        shapes[f"mlp.layers.{idx}.bias"] = (w_out,)
    # extras present in the real file and ignored by the loader
    shapes.update({
        "blip.vision_proj.weight": (BLIP_PRETRAIN_EMBED_DIM, dv), "blip.vision_proj.bias": (BLIP_PRETRAIN_EMBED_DIM,),
        "blip.text_proj.weight": (BLIP_PRETRAIN_EMBED_DIM, dt), "blip.text_proj.bias": (BLIP_PRETRAIN_EMBED_DIM,),
    })
    return shapes


def random_original_state(vision: dict, med: dict, head_widths: tuple[int, ...], seed: int,
                          std: float = 0.1) -> dict[str, Tensor]:
    """A random ImageReward-layout state dict (norm weights near 1, the rest N(0, std^2))."""
    gen = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    for key, shape in original_layout(vision, med, head_widths).items():
        noise = torch.randn(shape, generator=gen) * std
        is_norm_weight = key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "LayerNorm.weight"))
        state[key] = 1.0 + noise if is_norm_weight else noise
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(med["max_position_embeddings"])[None]
    return state


# Tiny family member: the same structure at toy widths; the head keeps ImageReward's widths.
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=8, layer_norm_eps=1e-6, hidden_act="gelu")
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=64, hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0,
                 add_cross_attention=True)
TINY_HEAD_WIDTHS = (1024, 128, 64, 16)
TINY_VERSION = 1


def tiny_wordpiece_vocab() -> list[str]:
    """A small uncased WordPiece vocabulary: BERT's specials, characters, and common words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789") + list(".,'!?-:;()&/\"")
    words = ["the", "of", "with", "on", "in", "and", "an", "to", "red", "blue", "green", "apple", "table", "cat",
             "dog", "house", "wooden", "small", "large", "chair", "car", "bird", "tree", "flower", "cup"]
    pieces = ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + ["##s", "##ed", "##ing"]
    vocab = specials + chars + [w for w in words if w not in chars] + pieces
    return list(dict.fromkeys(vocab))  # unique, order kept


def build_tiny_image_reward(folder: Path, seed: int) -> None:
    """Write a tiny ImageReward.pt (original key names), med_config.json and tokenizer/ into
    `folder`, deterministically from `seed`."""
    from transformers import BertTokenizer

    folder = Path(folder)
    tok_dir = folder / "tokenizer"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.txt").write_text("\n".join(tiny_wordpiece_vocab()) + "\n")
    BertTokenizer(str(tok_dir / "vocab.txt"), do_lower_case=True).save_pretrained(str(tok_dir))
    vocab = len(load_tokenizer(tok_dir))  # with BLIP's two added tokens, as the real 30522 + 2
    med = {"architectures": ["BertModel"], "model_type": "bert", **TINY_TEXT, "vocab_size": vocab,
           "encoder_width": TINY_VISION["hidden_size"]}
    (folder / "med_config.json").write_text(json.dumps(med, indent=2) + "\n")
    state = random_original_state(TINY_VISION, med, TINY_HEAD_WIDTHS, seed)
    torch.save(state, folder / "ImageReward.pt")
