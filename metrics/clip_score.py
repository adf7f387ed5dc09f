"""CLIP score with open_clip: mean over views of the raw cosine(image, text).

The released AnchorDS `utils/clip_metrics.py` uses OpenAI's ViT-L/14; here that is open_clip
`ViT-L-14-quickgelu` with pretrained tag `openai`. OpenAI trained its CLIPs with QuickGELU
(x * sigmoid(1.702 x)); open_clip's plain `ViT-L-14` config builds exact GELU and only warns when
the OpenAI weights are loaded into it, which silently shifts every cosine. The model set says
`quick_gelu: true` and the loader passes it on as open_clip's `force_quick_gelu` on both routes
(tag and local folder), and refuses OpenAI weights without it. The score is the raw cosine (like the paper's 0.33), not CLIPScore's 2.5 * max(cos, 0) and
not x100. Model name and pretrained tag are recorded with every score.

Real weights are loaded by tag (`create_model_and_transforms(model, pretrained=tag)`), which
reads open_clip's hub repo from the local Hugging Face cache; a folder in open_clip's
`local-dir:` layout (open_clip_config.json + open_clip_model.safetensors) is the other route,
used by the tiny model of the tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

# Tiny open_clip model: same CLIP family, 1.7M parameters, 32 px.
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_VERSION = 1


def cosine_scores(image_features: Tensor, text_features: Tensor) -> Tensor:
    """image_features [B, D], text_features [D] -> cosine similarities [B] (float64)."""
    img = torch.nn.functional.normalize(image_features.double(), dim=-1)
    txt = torch.nn.functional.normalize(text_features.double().reshape(-1), dim=-1)
    return img @ txt


@dataclass
class ClipScorer:
    model: Any
    preprocess: Any  # open_clip's eval transform: PIL -> [3, S, S]
    tokenizer: Any
    device: torch.device
    info: dict = field(default_factory=dict)  # model, pretrained, id, revision

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> Tensor:
        """uint8 [B, H, W, 3] -> image features [B, D]."""
        from PIL import Image

        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
        batch = torch.stack([self.preprocess(Image.fromarray(img)) for img in images]).to(self.device)
        return self.model.encode_image(batch).float()

    @torch.no_grad()
    def encode_text(self, prompt: str) -> Tensor:
        """prompt -> text features [D]."""
        return self.model.encode_text(self.tokenizer([prompt]).to(self.device)).float()[0]

    def score(self, prompt: str, images: np.ndarray) -> Tensor:
        """Raw cosine of every view with the prompt: [B] float64 on the CPU."""
        return cosine_scores(self.encode_images(images), self.encode_text(prompt)).cpu()


# pretrained tags whose weights were trained with QuickGELU (open_clip's `-quickgelu` configs)
QUICK_GELU_TAGS = ("openai",)


def load_clip(model_name: str, pretrained: Optional[str], folder: Optional[Path], device: torch.device,
              info: Optional[dict] = None, quick_gelu: bool = False) -> ClipScorer:
    """open_clip model by name + pretrained tag, or from a `local-dir:` folder when `folder` is given.

    `quick_gelu` becomes open_clip's `force_quick_gelu` (the activation the weights were trained with).
    """
    import open_clip

    if pretrained in QUICK_GELU_TAGS and not quick_gelu:
        raise ValueError(f"CLIP {model_name}/{pretrained}: the OpenAI weights need QuickGELU; "
                         f"set `quick_gelu: true` in the model set's clip section")
    if folder is not None:
        name = f"local-dir:{folder}"
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device, force_quick_gelu=quick_gelu)
        tokenizer = open_clip.get_tokenizer(name)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device,
                                                                     force_quick_gelu=quick_gelu)
        tokenizer = open_clip.get_tokenizer(model_name)
    model.eval().requires_grad_(False)
    record = {"model": model_name, "pretrained": pretrained, "quick_gelu": bool(quick_gelu), **(info or {})}
    return ClipScorer(model=model, preprocess=preprocess, tokenizer=tokenizer, device=torch.device(device), info=record)


def build_tiny_clip(folder: Path, seed: int) -> None:
    """Write a tiny open_clip model in the local-dir layout, deterministically from `seed`."""
    import open_clip
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "open_clip_config.json"
    cfg_path.write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}, indent=2) + "\n")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)  # open_clip initialises from the global generator
        model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    finally:
        torch.random.set_rng_state(state)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
