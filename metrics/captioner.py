"""BLIP-2 captions of the alignment views, through transformers.

    cap = Captioner.from_folder(folder)               # Blip2ForConditionalGeneration + Blip2Processor
    captions = cap.caption(images, CaptionerConfig())  # images [V, H, W, 3] -> V strings

Real model: `Salesforce/blip2-flan-t5-xxl` (transformers port). T3Bench captioned with LAVIS
`load_model_and_preprocess(name="blip2_t5", model_type="pretrain_flant5xxl")`: the same EVA ViT-g
+ Q-Former + Flan-T5-XXL family, but LAVIS preprocesses with its own 364 px "blip_image_eval"
transform and decodes through its own `generate`, so captions (and hence alignment numbers) are
not bit-identical to T3Bench's even with the same images.

Decoding follows T3Bench's call (`use_nucleus_sampling=True`, empty prompt) with LAVIS's defaults:
sampling with top_p 0.9 inside a 5-beam search, at most 30 new tokens, at least 1. T3Bench sets
no seed, so its captions change from run to run; we seed every view (seed + view index, under
`torch.random.fork_rng` so the caller's random stream is untouched) so that a caption does not
depend on the batch it was generated in and a rerun reproduces it.

The embedded tiny captioner (build_tiny_captioner) has the same architecture (BLIP-2 vision
tower, Q-Former, T5 language model) with tiny random weights and a byte-level tokenizer written
offline; it is saved with `save_pretrained` and loaded by the very same `from_folder`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from generators.models.tiny import bytes_to_unicode

BLIP2_ID = "Salesforce/blip2-flan-t5-xxl"


@dataclass
class CaptionerConfig:
    """Which captioner and how it decodes (T3Bench / LAVIS values as defaults)."""

    model_id: str = BLIP2_ID
    revision: str = "main"
    path: Optional[str] = None  # a local folder; wins over model_id
    prompt: str = ""  # T3Bench captions with an empty prompt
    use_nucleus_sampling: bool = True  # T3Bench: True (LAVIS then samples inside beam search)
    top_p: float = 0.9  # LAVIS default
    num_beams: int = 5  # LAVIS default
    max_new_tokens: int = 30  # LAVIS max_length (counts generated tokens for T5)
    min_new_tokens: int = 1  # LAVIS min_length
    repetition_penalty: float = 1.0  # LAVIS default
    length_penalty: float = 1.0  # LAVIS default
    temperature: float = 1.0  # LAVIS default
    seed: int = 0  # ours: T3Bench is unseeded
    # auto = bfloat16 on CUDA (BLIP-2 FlanT5-XXL: ~12.2B parameters, ~24 GB; ~49 GB in float32), float32
    # on CPU; or float32 / bfloat16 / float16 (Flan-T5 overflows in float16)
    dtype: str = "auto"


def to_uint8_images(images: Any) -> np.ndarray:
    """[V, H, W, 3] uint8 from uint8 or float in [0, 1] (numpy or torch); anything else is an error."""
    if hasattr(images, "detach"):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected images shaped [V, H, W, 3], got {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"expected uint8 or float images, got {arr.dtype}")
    return (np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8)


class Captioner:
    """A BLIP-2 model + processor; `record` says what was loaded (id, revision, path)."""

    def __init__(self, model: Any, processor: Any, record: Optional[dict] = None):
        self.model = model
        self.processor = processor
        self.record = dict(record or {})

    @classmethod
    def from_folder(cls, folder: str | Path, record: Optional[dict] = None, device: str = "cpu",
                    dtype: Any = None) -> "Captioner":
        import torch
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        folder = Path(folder)
        processor = Blip2Processor.from_pretrained(folder)
        if dtype is None:
            dtype = torch.float32
        model = Blip2ForConditionalGeneration.from_pretrained(folder, dtype=dtype).to(device).eval()
        model.requires_grad_(False)
        return cls(model, processor, {"path": str(folder), **(record or {})})

    def describe(self, cfg: CaptionerConfig) -> dict:
        settings = {k: v for k, v in asdict(cfg).items() if k not in ("model_id", "revision", "path")}
        return {**self.record, "dtype": str(self.model.dtype).replace("torch.", ""), "settings": settings}

    def caption(self, images: Any, cfg: CaptionerConfig) -> list[str]:
        """One caption per view: images [V, H, W, 3] uint8 or float in [0, 1] -> V strings."""
        import torch
        from PIL import Image

        frames = to_uint8_images(images)
        device = self.model.device
        captions = []
        for i, frame in enumerate(frames):
            inputs = self.processor(images=Image.fromarray(frame), text=cfg.prompt, return_tensors="pt").to(device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            devices = [device] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(cfg.seed + i)
                out = self.model.generate(
                    **inputs,
                    do_sample=cfg.use_nucleus_sampling,
                    top_p=cfg.top_p if cfg.use_nucleus_sampling else None,
                    temperature=cfg.temperature if cfg.use_nucleus_sampling else None,
                    num_beams=cfg.num_beams,
                    max_new_tokens=cfg.max_new_tokens,
                    min_new_tokens=cfg.min_new_tokens,
                    repetition_penalty=cfg.repetition_penalty,
                    length_penalty=cfg.length_penalty,
                )
            captions.append(self.processor.batch_decode(out, skip_special_tokens=True)[0].strip())
        return captions


# ----------------------------------------------------------------------------------------------
# Offline tokenizer and the tiny captioner


def build_byte_tokenizer(specials: list[str], bos: Optional[str], eos: str, append_eos: bool) -> Any:
    """A fast byte-level tokenizer with no merges (one token per byte), built without downloads.

    Ids: the special tokens first (in order), then the 256 bytes. `append_eos` adds `eos` after
    every text, as T5's tokenizer does. Saved with save_pretrained it reloads with AutoTokenizer.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(specials)}
    for ch in bytes_to_unicode().values():  # byte order
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>" if "<unk>" in specials else None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(single=f"$A {eos}", pair=f"$A {eos} $B {eos}",
                                                           special_tokens=[(eos, vocab[eos])])
    kwargs = {"eos_token": eos, "pad_token": "<pad>"}
    if bos:
        kwargs["bos_token"] = bos
    if "<unk>" in specials:
        kwargs["unk_token"] = "<unk>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


# Tiny widths of the three BLIP-2 parts (vision tower, Q-Former, Flan-T5).
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=8)
TINY_QFORMER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    encoder_hidden_size=32, cross_attention_frequency=1)
TINY_T5 = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
               feed_forward_proj="gated-gelu", tie_word_embeddings=False)
TINY_QUERY_TOKENS = 4
TINY_LOGIT_SCALE = 0.02
# BLIP-2's image normalisation (OpenAI CLIP mean/std), as the real processor config has.
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tiny_captioner(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a tiny random BLIP-2 (ViT + Q-Former + T5) and its processor to `out_dir`."""
    import torch
    from transformers import (Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, Blip2QFormerConfig,
                              Blip2VisionConfig, BlipImageProcessor, T5Config)

    out_dir = Path(out_dir)
    tokenizer = build_byte_tokenizer(specials=["<pad>", "</s>", "<unk>"], bos=None, eos="</s>", append_eos=True)
    image_processor = BlipImageProcessor(size={"height": TINY_VISION["image_size"], "width": TINY_VISION["image_size"]},
                                         image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
    # the processor adds the "<image>" placeholder token to the tokenizer: size the vocab after it
    processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=TINY_QUERY_TOKENS)
    vocab_size = len(processor.tokenizer)
    t5 = T5Config(vocab_size=vocab_size, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, **TINY_T5)
    config = Blip2Config(vision_config=Blip2VisionConfig(**TINY_VISION).to_dict(),
                         qformer_config=Blip2QFormerConfig(**TINY_QFORMER).to_dict(),
                         text_config=t5.to_dict(), num_query_tokens=TINY_QUERY_TOKENS,
                         image_token_index=processor.tokenizer.convert_tokens_to_ids("<image>"))
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = Blip2ForConditionalGeneration(config).eval()
        # T5's init gives peaked random logits (one token wins everywhere); flattening them makes
        # nucleus sampling really sample, so the seed visibly matters in tests
        with torch.no_grad():
            model.language_model.lm_head.weight.mul_(TINY_LOGIT_SCALE)
    finally:
        torch.set_rng_state(rng)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
