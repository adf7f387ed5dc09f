"""Sample the ToyWorld prior (DDIM + classifier-free guidance) and score the samples with the judge.

    python -m generators.toyworld.sample --run .cache/toyworld/prior_run --judge generators/models/toy/judge \
        [--guidance 3] [--per-caption 32] [--captions one|two|all] [--out eval.json]

CFG follows the diffusers convention: eps = eps(empty) + s * (eps(text) - eps(empty)). Text-only
samples condition the image branch on "no image" (a zero normalised image, as diffusers'
`encode_image` builds for the unconditional branch).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import Tensor

from generators.errors import UserError, report_error
from generators.io import atomic_write_json
from generators.toyworld.config import SampleConfig
from generators.toyworld.prior import ToyPrior, build_scheduler, build_tokenizer, from_latents
from generators.toyworld.world import all_specs, caption, parse


@torch.no_grad()
def sample(model: ToyPrior, captions: list[str], cfg: SampleConfig, generator: torch.Generator,
           image_pixels: Tensor | None = None, size: int = 32) -> Tensor:
    """One sample per caption -> images [B, H, W, 3] in [0, 1].

    image_pixels [B, 3, 32, 32] (CLIP-normalised) conditions the image branch of both CFG
    halves; None means no image.
    """
    net = model.cfg
    b = len(captions)
    tok = build_tokenizer(net.max_length)
    ids = tok(captions + [""] * b, padding="max_length", max_length=net.max_length, truncation=True,
              return_tensors="pt").input_ids
    pixels = torch.zeros(b, 3, size, size) if image_pixels is None else image_pixels
    pixels = torch.cat([pixels, pixels])
    sched = build_scheduler(net)
    sched.set_timesteps(cfg.steps)
    c = 3 * net.factor**2
    z = torch.randn(b, c, size // net.factor, size // net.factor, generator=generator)
    for t in sched.timesteps:
        eps = model(torch.cat([z, z]), t.expand(2 * b), ids, pixels)
        eps_text, eps_empty = eps.chunk(2)
        guided = eps_empty + cfg.guidance_scale * (eps_text - eps_empty)
        z = sched.step(guided, t, z, eta=cfg.eta, generator=generator).prev_sample
    return from_latents(z, net.factor).permute(0, 2, 3, 1)


def judge_samples(judge, images: Tensor, specs: list) -> dict:
    """Fraction of samples whose judged object set / colour set / shape set match the caption."""
    from generators.toyworld.data import encode_specs
    from generators.toyworld.judge import labels_from_objects

    pred = judge.predict(images)
    objects, _ = encode_specs(specs)
    lab = labels_from_objects(objects)
    return {
        "exact_set": float(((pred["objects"] == lab["objects"]).all(1) & (pred["count"] == lab["count"])).float().mean()),
        "colour_set": float((pred["colours"] == lab["colours"]).all(1).float().mean()),
        "shape_set": float((pred["shapes"] == lab["shapes"]).all(1).float().mean()),
        "count": float((pred["count"] == lab["count"]).float().mean()),
        "samples": len(specs),
    }


def evaluate_prior(model: ToyPrior, judge, cfg: SampleConfig, *, per_caption: int, captions: str = "all",
                   max_two: int = 48, seed: int = 0, step: int | None = None, echo: bool = False) -> dict:
    """The prior's judged accuracy: `per_caption` samples of each one-object caption and of `max_two`
    two-object captions (a fixed stride through all 240), one seeded generator, so two checkpoints
    are compared on the same noise."""
    g = torch.Generator().manual_seed(seed)
    groups = {}
    if captions in ("one", "all"):
        groups["1_object"] = [caption(s) for s in all_specs(1)]
    if captions in ("two", "all"):
        two = [caption(s) for s in all_specs(2)]
        stride = max(1, len(two) // max_two)
        groups["2_object"] = two[::stride][:max_two]
    result = {"step": step, "guidance_scale": cfg.guidance_scale, "ddim_steps": cfg.steps}
    for name, caps in groups.items():
        t0 = time.time()
        all_caps = [c for c in caps for _ in range(per_caption)]
        images = torch.cat([sample(model, all_caps[i:i + 256], cfg, g) for i in range(0, len(all_caps), 256)])
        result[name] = judge_samples(judge, images, [parse(c) for c in all_caps]) | {"sample_s": round(time.time() - t0, 1)}
        if echo:
            print(name, result[name], flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    from generators.toyworld.export import load_run
    from generators.toyworld.judge import load_judge

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--judge", type=Path, default=Path("generators/models/toy/judge"))
    ap.add_argument("--guidance", type=float, default=SampleConfig.guidance_scale)
    ap.add_argument("--steps", type=int, default=SampleConfig.steps)
    ap.add_argument("--per-caption", type=int, default=SampleConfig.samples_per_caption)
    ap.add_argument("--captions", choices=["one", "two", "all"], default="all")
    ap.add_argument("--max-two", type=int, default=48, help="two-object captions drawn (of 240), fixed order")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model, ck = load_run(args.run)
        judge = load_judge(args.judge)
    except (UserError, FileNotFoundError) as e:
        return report_error(e)
    result = evaluate_prior(model, judge, SampleConfig(steps=args.steps, guidance_scale=args.guidance),
                            per_caption=args.per_caption, captions=args.captions, max_two=args.max_two,
                            seed=args.seed, step=ck["step"], echo=True)
    if args.out:
        atomic_write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
