"""GPU memory of the evaluation stage's networks, from their parameter counts and dtypes.

    PYTHONPATH=. python tests/perf/eval_model_memory.py     # prints a markdown table; no downloads

Each network is built on PyTorch's `meta` device from its published architecture (the configs
below are those of the hub repos the t3bench metric set names), so nothing is allocated and no
weights are needed. Weights only: inference activations at our batch sizes add well under 1 GB
(the numbers in docs/t3bench.md say so).
"""

from __future__ import annotations

import torch

GIB = 1024 ** 3


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def blip2_flan_t5_xxl() -> int:
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    config = Blip2Config(
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                           image_size=224, patch_size=14, qkv_bias=True),
        qformer_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            encoder_hidden_size=1408, cross_attention_frequency=2, vocab_size=30522),
        text_config=dict(model_type="t5", d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
                         num_decoder_layers=24, vocab_size=32128, feed_forward_proj="gated-gelu",
                         tie_word_embeddings=False),
        num_query_tokens=32)
    with torch.device("meta"):
        return count(Blip2ForConditionalGeneration(config))


def qwen25_7b_instruct() -> int:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                         num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False)
    with torch.device("meta"):
        return count(Qwen2ForCausalLM(config))


def clip_vit_l14() -> int:
    import open_clip

    with torch.device("meta"):
        return count(open_clip.create_model("ViT-L-14-quickgelu", pretrained=None, device="meta"))


def image_reward() -> int:
    """Our ImageReward port (metrics.image_reward) at ImageReward-v1.0's size: BLIP ViT-L/16 at 224 px
    (the t3bench set's vision section), BLIP's med_config text encoder, the 768-1024-128-64-16-1 head."""
    from metrics.image_reward import ImageRewardModel, text_config_from_med, vision_config_from_dict
    from metrics.models import load_set_spec

    vision = load_set_spec("t3bench").section("image_reward")["vision"]
    med = {"vocab_size": 30524, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
           "intermediate_size": 3072, "max_position_embeddings": 512, "add_cross_attention": True}
    with torch.device("meta"):
        return count(ImageRewardModel(vision_config_from_dict(vision), text_config_from_med(med, vision["hidden_size"]),
                                      (1024, 128, 64, 16)))


ROWS = [
    ("quality", "ImageReward-v1.0 (THUDM/ImageReward)", image_reward, "float32"),
    ("clip", "CLIP ViT-L/14 OpenAI (open_clip ViT-L-14-quickgelu)", clip_vit_l14, "float32"),
    ("alignment", "BLIP-2 FlanT5-XXL (Salesforce/blip2-flan-t5-xxl)", blip2_flan_t5_xxl, "bfloat16"),
    ("alignment, local judge", "Qwen/Qwen2.5-7B-Instruct", qwen25_7b_instruct, "bfloat16"),
]
BYTES = {"float32": 4, "bfloat16": 2}

if __name__ == "__main__":
    print("| stage | model | parameters | dtype on CUDA | weights | in float32 |")
    print("|---|---|---|---|---|---|")
    for stage, name, fn, dtype in ROWS:
        n = fn()
        print(f"| {stage} | {name} | {n / 1e9:.3f} B | {dtype} | {n * BYTES[dtype] / GIB:.1f} GiB | {n * 4 / GIB:.1f} GiB |")
