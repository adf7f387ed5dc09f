"""ToyBench's controls: scenes whose place in every metric is known, scored with the methods.

    gaussians = fit_true_scene("a red cube", ControlConfig())    # the positive control
    views = control_views("a red cube", cfg, control_cfg, cameras)  # {control: [V, H, W, 3]}

Each control is a set of views from the ToyBench cameras, scored by exactly the code that scores a
run (metrics.toybench.score_views). Every ToyBench metric must order them: the three negative
controls at the bottom, the fitted true scene near the top.

  empty            nothing but the background                            (negative)
  ball             the `toy` set's initial ball (random colours, opacity 0.05, radius 0.9),
                   rendered as a run's Gaussians are                      (negative)
  noise            per-pixel uniform colour noise                         (negative)
  other caption    the true scene of a different caption (no object in common), ToyWorld's renderer
  fitted truth     the true scene fitted as 3D Gaussians: points on the objects' surfaces, coloured
                   and sized by a photometric fit to ToyWorld renders through our dense rasterizer,
                   so a positive control in the representation the methods produce (positive)

The fit is deterministic (fixed seeds) and cached per caption and recipe under
.cache/toyworld/controls/, so a suite fits each caption once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from generators.cameras import Cameras

CONTROLS = ("empty", "ball", "noise", "other caption", "fitted truth")
NEGATIVE_CONTROLS = ("empty", "ball", "noise")
POSITIVE_CONTROL = "fitted truth"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "toyworld" / "controls"


@dataclass
class ControlConfig:
    """The controls' recipe (the fit's constants: why each value, in its comment)."""

    seed: int = 0
    # the initial ball: the `toy` set's run_defaults.init (generators/models/sets/toy.yaml); repeated here
    # because these settings are recorded with every score, and a test keeps the two equal
    ball_points: int = 2048
    ball_radius: float = 0.9
    ball_opacity: float = 0.05
    # the fitted true scene
    fit_points: int = 1200  # Gaussians on the objects' surfaces (a 400-step run ends with 1-8k)
    shell_depth: float = 0.05  # points drawn inside the surface, at most this deep (world units)
    init_scale: float = 0.045  # std of each Gaussian at the start, about the point spacing
    init_opacity: float = 0.7
    fit_views: int = 48  # ToyWorld renders from the world's camera distribution
    fit_steps: int = 150
    fit_batch: int = 8  # views per step
    lr: dict = field(default_factory=lambda: {"means": 2e-3, "scales": 1e-2, "opacities": 5e-2, "sh0": 2e-2})
    size: int = 32


def other_caption(caption: str) -> str:
    """A caption with the same number of objects and no object, colour or shape in common
    (deterministic): 'a red cube' -> 'a green sphere'."""
    from generators.toyworld.config import COLOURS, SHAPES
    from generators.toyworld.world import ObjectSpec, SceneSpec, caption as caption_of, parse

    spec = parse(caption)
    used_c = {o.colour for o in spec.objects}
    used_s = {o.shape for o in spec.objects}
    free_c = [c for c in COLOURS if c not in used_c]
    free_s = [s for s in SHAPES if s not in used_s]
    objects = tuple(ObjectSpec(free_s[i], free_c[i]) for i in range(len(spec.objects)))
    return caption_of(SceneSpec(objects, spec.relation))


def _canonical_scene(caption: str):
    from generators.toyworld.config import WorldConfig
    from generators.toyworld.world import layout, parse

    world = WorldConfig()
    return world, layout([parse(caption)], world.layout, world.geometry, generator=None)


def surface_points(caption: str, n: int, shell_depth: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """`n` points [n, 3] just inside the canonical scene's surfaces and their objects' albedo [n, 3]."""
    from generators.toyworld.sdf_render import colour_table, scene_sdf

    world, batch = _canonical_scene(caption)
    kept, slots = [], []
    got = 0
    while got < n:
        p = (torch.rand(20000, 3, generator=generator) * 2.0 - 1.0) * world.tracer.scene_radius
        d, slot = scene_sdf(p, torch.zeros(len(p), dtype=torch.long), batch, world.geometry)
        inside = (d <= 0.0) & (d > -shell_depth)
        kept.append(p[inside])
        slots.append(slot[inside])
        got += int(inside.sum())
    points = torch.cat(kept)[:n]
    slot = torch.cat(slots)[:n]
    albedo = colour_table(world)[batch.colour_id[0, slot]]
    return points, albedo


def toyworld_views(caption: str, cameras: Cameras) -> Tensor:
    """The canonical scene of `caption` drawn by ToyWorld's renderer from each camera -> [V, H, W, 3]."""
    from generators.toyworld.sdf_render import render_scenes

    world, one = _canonical_scene(caption)
    batch = type(one)(*(getattr(one, f).expand(len(cameras), *getattr(one, f).shape[1:])
                        for f in ("shape_id", "colour_id", "centre", "yaw", "scale")))
    return render_scenes(batch, cameras, world)


def _render_cfg():
    from generators.config import RenderConfig

    return RenderConfig(backend="dense")


def render_rgb(gaussians, cameras: Cameras, background: tuple[float, float, float]) -> Tensor:
    """[V, H, W, 3] in [0, 1]: our rasterizer, as a run's views are drawn."""
    from generators.render import render

    return render(gaussians, cameras, _render_cfg(), torch.tensor(background, dtype=torch.float32)).rgb.clamp(0, 1)


def fit_true_scene(caption: str, cfg: ControlConfig, log=None):
    """The caption's true scene as 3D Gaussians, fitted to ToyWorld's renders (see the module doc)."""
    from generators.gaussians import Gaussians
    from generators.toyworld.config import ShadingConfig, ViewSampling
    from generators.toyworld.data import sample_views

    g = torch.Generator().manual_seed(cfg.seed)
    points, albedo = surface_points(caption, cfg.fit_points, cfg.shell_depth, g)
    shading = ShadingConfig()
    mean_shade = shading.ambient + 0.5 * (shading.world_light + shading.head_light)  # a start, the fit corrects it
    gaussians = Gaussians.from_points(points, (albedo * mean_shade).clamp(0, 1), torch.full((len(points),), cfg.init_scale),
                                      opacity=cfg.init_opacity)
    cams = sample_views(cfg.fit_views, ViewSampling(), cfg.size, g)
    target = toyworld_views(caption, cams)
    bg = (shading.background,) * 3
    params = gaussians.params
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lr} for k, lr in cfg.lr.items()])
    for step in range(cfg.fit_steps):
        idx = torch.randint(0, cfg.fit_views, (cfg.fit_batch,), generator=g).tolist()
        loss = ((render_rgb(gaussians, cams.subset(idx), bg) - target[idx]) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log is not None and (step + 1) % 50 == 0:
            log(f"fit {caption!r}: step {step + 1} mse {loss.item():.5f}")
    return gaussians


def _cache_path(caption: str, cfg: ControlConfig) -> Path:
    key = hashlib.sha256(json.dumps([caption, asdict(cfg)], sort_keys=True).encode()).hexdigest()[:16]
    return CACHE / f"{key}.pt"


def fitted_true_scene(caption: str, cfg: ControlConfig, cache: Optional[Path] = CACHE, log=None):
    """`fit_true_scene`, cached on disk per caption and recipe (atomic write)."""
    from generators.gaussians import Gaussians
    from generators.io import atomic_write

    path = None if cache is None else Path(cache) / _cache_path(caption, cfg).name
    if path is not None and path.is_file():
        return Gaussians.from_state(torch.load(path, weights_only=True))
    gaussians = fit_true_scene(caption, cfg, log)
    if path is not None:
        atomic_write(path, lambda p: torch.save(gaussians.state(), p))
    return gaussians


def initial_ball(cfg: ControlConfig):
    from generators.config import InitConfig
    from generators.gaussians.init import init_ball

    init = InitConfig(kind="ball", ball_points=cfg.ball_points, ball_radius=cfg.ball_radius, opacity=cfg.ball_opacity)
    return init_ball(init, torch.Generator().manual_seed(cfg.seed))


@torch.no_grad()
def control_views(caption: str, cameras: Cameras, background: tuple[float, float, float], cfg: ControlConfig,
                  cache: Optional[Path] = CACHE) -> dict[str, Tensor]:
    """Every control's views [V, H, W, 3] in [0, 1] from `cameras`, quantised to 8 bits like a run's."""
    quantise = lambda x: (x.clamp(0, 1) * 255).round() / 255.0  # noqa: E731
    v, h, w = len(cameras), cameras.height, cameras.width
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.enable_grad():
        fitted = fitted_true_scene(caption, cfg, cache)
    views = {
        "empty": torch.tensor(background).expand(v, h, w, 3).clone(),
        "ball": render_rgb(initial_ball(cfg), cameras, background),
        "noise": torch.rand(v, h, w, 3, generator=g),
        "other caption": toyworld_views(other_caption(caption), cameras),
        "fitted truth": render_rgb(fitted, cameras, background),
    }
    return {k: quantise(x.float()) for k, x in views.items()}


def score_suite(prompts: list, toy_cfg=None, control_cfg: Optional[ControlConfig] = None, log=print) -> list[dict]:
    """One row per (caption, control or the ToyWorld sample): every ToyBench number, ToyBench cameras."""
    import time

    from metrics.config import ToyBenchConfig
    from metrics.toybench import (CONTROL_KEYS, ground_truth_views, load_toybench_models, score_controls,
                                  score_views, toybench_cameras)

    toy_cfg = toy_cfg or ToyBenchConfig()
    models = load_toybench_models(Path(__file__).resolve().parents[1] / "generators" / "models" / "toy" / "judge",
                                  torch.device("cpu"))
    cams = toybench_cameras(toy_cfg)
    rows = []
    t0 = time.time()
    for i, entry in enumerate(prompts):
        quantise = lambda x: (x.clamp(0, 1) * 255).round() / 255.0  # noqa: E731
        truth = quantise(ground_truth_views(entry.prompt, cams))
        sample = quantise(ground_truth_views(entry.prompt, cams, seed=toy_cfg.reference_seed))
        scored = {"ToyWorld sample": {k: v for k, v in score_views(sample, truth, entry.prompt, toy_cfg, models).items()
                                      if k in CONTROL_KEYS}}
        scored.update(score_controls(entry.prompt, cams, truth, toy_cfg, models, control_cfg))
        for name, nums in scored.items():
            rows.append({"category": entry.category, "prompt": entry.prompt, "control": name, **nums})
        if log:
            log(f"{i + 1}/{len(prompts)} {entry.prompt} ({time.time() - t0:.0f} s)")
    return rows


def control_table(rows: list[dict]) -> str:
    """Per category and control: mean alignment, consistency, Janus (over the captions where it
    applies; n/a where none shows the caption), quality, and the share of confident readings."""
    import pandas as pd

    df = pd.DataFrame(rows)
    order = ["ToyWorld sample", *CONTROLS]
    lines = ["| category | control | captions | alignment % | consistency % | Janus % (captions it applies to) "
             "| quality (colour-area error) | views with a reading % |", "|---|---|---|---|---|---|---|---|"]
    for cat in dict.fromkeys(df["category"]):
        for name in order:
            d = df[(df["category"] == cat) & (df["control"] == name)]
            if d.empty:
                continue
            janus = d["janus"].dropna()
            j = "n/a (never shows the caption)" if janus.empty else f"{janus.mean() * 100:.1f} ({len(janus)})"
            lines.append(f"| {cat} | {name} | {len(d)} | {d['alignment'].mean() * 100:.1f} | "
                         f"{d['consistency'].mean() * 100:.1f} | {j} | {d['quality'].mean():.3f} | "
                         f"{d['read_share'].mean() * 100:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """python -m metrics.toybench_controls --prompts toybench --out results/toybench-controls"""
    import argparse

    import pandas as pd

    from generators.io import atomic_write, atomic_write_text
    from prompts.suites import load_suite

    ap = argparse.ArgumentParser(description="Score ToyBench's controls for every caption of a suite")
    ap.add_argument("--prompts", default="toybench", help="prompt suite (default: the test suite)")
    ap.add_argument("--limit", type=int, default=None, help="first N captions of each category")
    ap.add_argument("--out", type=Path, default=Path("results/toybench-controls"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    entries = load_suite(args.prompts)
    if args.limit:
        entries = [e for c in dict.fromkeys(e.category for e in entries)
                   for e in [x for x in entries if x.category == c][:args.limit]]
    rows = score_suite(entries)
    df = pd.DataFrame(rows)
    atomic_write(args.out / "controls.parquet", lambda p: df.to_parquet(p, index=False))
    command = "python -m metrics.toybench_controls " + " ".join(argv if argv is not None else __import__("sys").argv[1:])
    text = (f"# ToyBench controls ({args.prompts}, {len(entries)} captions)\n\nRegenerate: `{command}`\n\n"
            + control_table(rows) + "\n")
    atomic_write_text(args.out / "controls.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
