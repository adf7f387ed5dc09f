"""ToyBench: score a run made with the ToyWorld prior (model set `toy`) from multi-view renders.

The run's Gaussians are rendered, in the world's own frame (no T3Bench normalisation: the prior
and the judge know objects at world scale), from `ToyBenchConfig`'s ring of cameras, which lie
inside the ToyWorld camera distribution. Each view gets a *reading*: the judge's object set when
the judge gives every object of it a probability of at least `min_object_probability` (its own
multi-label threshold), else none (an empty view, the initial ball of random colours, colour noise:
the judge names some set there, but without confidence). Then (metric version 2):

  alignment     share of views whose reading is exactly the caption's object set (right count,
                right shape and colour each); colour-set, shape-set and count rates beside it
  consistency   persistence of the caption's objects over the views: for each object of the
                caption, the share of views whose reading contains it; the smallest over the
                caption's objects. An object that shows from some sides only, or turns into
                another, lowers it; extra objects (floaters) do not (alignment counts those).
                A blank, or a view-invariant blob of the wrong kind, scores 0.
  janus         among runs that show the caption (in >= `janus_min_fraction` of the views): 1
                when a second, different reading is also seen from >= `janus_min_fraction` of the
                views (the object changes with the side it is seen from), else 0. None (not
                applicable) for a run that does not show the caption: it cannot pass for Janus-free.
  quality       colour-area error, a size-and-colour fidelity proxy: per view, the image area
                of each world colour (pixels off the background, assigned to the nearest colour
                by chromaticity) against the true scene's from the same camera,
                min(1, sum_c |A_view(c) - A_true(c)| / sum_c A_true(c)), averaged over views.
                0 = the right colours at the right size; 1 = as far off as an empty image (or
                further: an oversized object, floaters, noise are capped there). Lower is better.
                Position- and orientation-blind at this level, so a turned cube is not punished.

Each record also holds the same numbers for a ToyWorld sample of the caption (the world's renderer,
random yaw and +-8% scale as in the prior's training data) from the same cameras (the protocol's
ceiling), and for the controls of metrics/toybench_controls.py (empty, initial ball, colour noise,
another caption's true scene, the true scene fitted as Gaussians), which every metric must order.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor

from generators.cameras import Cameras, make_cameras


@dataclass
class ToyBenchModels:
    """The networks the stage needs: ToyWorld's judge."""

    judge: Any  # generators.toyworld.judge.Judge
    info: dict


def load_toybench_models(judge_folder: Path, device: torch.device) -> ToyBenchModels:
    from generators.toyworld.judge import load_judge

    judge = load_judge(judge_folder)
    judge.net.to(device)
    info = {"judge": str(judge_folder), "judge_architecture": judge.config.get("architecture")}
    return ToyBenchModels(judge=judge, info=info)


def toybench_cameras(cfg) -> Cameras:
    """`num_azimuths` evenly spaced azimuths at each elevation of `cfg.elevations_deg`."""
    az = torch.arange(cfg.num_azimuths, dtype=torch.float32) * (360.0 / cfg.num_azimuths) + cfg.start_azimuth_deg
    elev = torch.tensor(cfg.elevations_deg, dtype=torch.float32)
    elevation = elev.repeat_interleave(cfg.num_azimuths)
    azimuth = az.repeat(len(elev))
    n = len(elevation)
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return make_cameras(elevation, azimuth, full(cfg.distance), full(cfg.fov_y_deg), cfg.size, cfg.size)


def ground_truth_views(caption: str, cameras: Cameras, seed: Optional[int] = None) -> Tensor:
    """The world's renderer drawing the caption's scene from each camera -> [V, H, W, 3] in [0, 1].

    seed None: the canonical scene (no yaw, scale 1); a seed: one ToyWorld sample of the caption
    (each object's yaw and scale drawn once, as in the training data)."""
    from generators.toyworld.config import WorldConfig
    from generators.toyworld.data import render_specs
    from generators.toyworld.world import layout, parse
    from generators.toyworld.sdf_render import render_scenes

    world = WorldConfig()
    spec = parse(caption)
    if seed is None:
        return render_specs([spec] * len(cameras), cameras, world, generator=None)
    one = layout([spec], world.layout, world.geometry, torch.Generator().manual_seed(seed))
    batch = type(one)(*(getattr(one, f).expand(len(cameras), *getattr(one, f).shape[1:])
                        for f in ("shape_id", "colour_id", "centre", "yaw", "scale")))
    return render_scenes(batch, cameras, world)


def colour_areas(images: Tensor, background: tuple[float, float, float], threshold: float) -> Tensor:
    """[V, H, W, 3] -> [V, len(COLOURS)]: the fraction of each view covered by each world colour.

    A pixel belongs to an object when some channel differs from the background by more than
    `threshold`; it takes the world colour nearest in chromaticity (rgb / sum), which shading
    does not change."""
    from generators.toyworld.config import COLOURS, ShadingConfig

    palette = torch.tensor([ShadingConfig().colours_rgb[c] for c in COLOURS], dtype=images.dtype)
    palette = palette / palette.sum(dim=1, keepdim=True)
    bg = torch.tensor(background, dtype=images.dtype)
    on_object = (images - bg).abs().amax(dim=-1) > threshold  # [V, H, W]
    chroma = images / images.sum(dim=-1, keepdim=True).clamp_min(1e-6)
    nearest = ((chroma[..., None, :] - palette) ** 2).sum(dim=-1).argmin(dim=-1)  # [V, H, W]
    return torch.stack([(on_object & (nearest == c)).float().mean(dim=(1, 2)) for c in range(len(palette))], dim=1)


def colour_area_error(images: Tensor, truth: Tensor, background: tuple[float, float, float], threshold: float,
                      cap: bool = True) -> float:
    """Mean over views of min(1, sum_c |A_view(c) - A_true(c)| / sum_c A_true(c)): 0 exact, 1 = an
    empty view or worse (`cap=False`: the uncapped v1 error)."""
    a = colour_areas(images, background, threshold)
    b = colour_areas(truth, background, threshold)
    err = (a - b).abs().sum(dim=1) / b.sum(dim=1).clamp_min(1e-6)
    return float((err.clamp(max=1.0) if cap else err).mean())


def judged_sets(judge, images: Tensor, min_probability: float = 0.0) -> tuple[list[Optional[tuple[int, ...]]], dict[str, Tensor]]:
    """images [V, H, W, 3] in [0, 1] -> (each view's reading: its judged object set as sorted object
    ids, or None when the judge gives some object of it less than `min_probability`; the judge's
    predictions per head)."""
    pred = judge.predict(images.float())
    sets: list[Optional[tuple[int, ...]]] = []
    for row, prob in zip(pred["objects"], pred["object_prob"]):
        chosen = torch.nonzero(row).flatten()
        sure = bool((prob[chosen] >= min_probability).all())
        sets.append(tuple(int(i) for i in chosen) if sure else None)
    return sets, pred


def set_name(objects: Optional[tuple[int, ...]]) -> str:
    """A reading as a caption-like string, e.g. 'red cube + blue sphere'; '(no reading)' for None."""
    from generators.toyworld.world import all_objects

    if objects is None:
        return "(no reading)"
    names = {o.index: f"{o.colour} {o.shape}" for o in all_objects()}
    return " + ".join(names[i] for i in objects) or "(nothing)"


def caption_set(caption: str) -> tuple[int, ...]:
    """The caption's object set as sorted object ids (a reading's form)."""
    from generators.toyworld.world import parse

    return tuple(sorted(o.index for o in parse(caption).objects))


def view_agreement(sets: list[Optional[tuple[int, ...]]], pred: dict, caption: str, janus_min_fraction: float) -> dict:
    """Alignment, consistency and Janus numbers of one run's readings (None = no reading) against its caption."""
    from generators.toyworld.judge import labels_from_objects
    from generators.toyworld.data import encode_specs
    from generators.toyworld.world import parse

    spec = parse(caption)
    objects, _ = encode_specs([spec])
    label = {k: v[0] for k, v in labels_from_objects(objects).items()}
    target = caption_set(caption)
    v = len(sets)
    read = torch.tensor([s is not None for s in sets])
    aligned = [s == target for s in sets]
    persistence = [sum(1 for s in sets if s is not None and o in s) / v for o in target]
    readings = Counter(s for s in sets if s is not None).most_common()
    modal = readings[0][0] if readings else None
    shown = sum(aligned) >= janus_min_fraction * v
    second = max((n for s, n in readings if s != target), default=0)
    return {
        "alignment": sum(aligned) / v,
        "colour_set": float(((pred["colours"] == label["colours"]).all(1) & read).float().mean()),
        "shape_set": float(((pred["shapes"] == label["shapes"]).all(1) & read).float().mean()),
        "count": float(((pred["count"] == label["count"]) & read).float().mean()),
        "consistency": min(persistence),
        "janus": float(second >= janus_min_fraction * v) if shown else None,
        "read_share": float(read.float().mean()),
        "modal_set": set_name(modal),
        "modal_is_caption": modal == target,
        "view_sets": [set_name(s) for s in sets],
    }


def score_views(images: Tensor, truth: Tensor, caption: str, cfg, models: ToyBenchModels) -> dict:
    """Every ToyBench number of one set of views [V, H, W, 3] in [0, 1]; `truth`: the canonical
    scene from the same cameras."""
    sets, pred = judged_sets(models.judge, images.to(next(models.judge.net.parameters()).device),
                             cfg.min_object_probability)
    out = view_agreement(sets, {k: v.cpu() for k, v in pred.items()}, caption, cfg.janus_min_fraction)
    bg = tuple(cfg.background)
    out["quality"] = colour_area_error(images, truth, bg, cfg.object_threshold)
    out["object_area"] = float(colour_areas(images, bg, cfg.object_threshold).sum(dim=1).mean())
    return out


def score_controls(caption: str, cams: Cameras, truth: Tensor, cfg, models: ToyBenchModels, control_cfg=None,
                   cache: Optional[Path] = None) -> dict:
    """Every control's numbers (metrics.toybench_controls) from the same cameras, against the same truth.
    `cache`: where fitted scenes are kept (default: the repository's .cache/toyworld/controls)."""
    from metrics.toybench_controls import CACHE, ControlConfig, control_views

    control_cfg = control_cfg or ControlConfig()
    out = {}
    for name, views in control_views(caption, cams, tuple(cfg.background), control_cfg, cache or CACHE).items():
        scores = score_views(views, truth, caption, cfg, models)
        out[name] = {k: scores[k] for k in CONTROL_KEYS}
    return out


CONTROL_KEYS = ("alignment", "consistency", "janus", "quality", "read_share", "modal_set")


def check_caption(caption: str) -> None:
    from generators.errors import UserError
    from generators.toyworld.world import CaptionError, parse

    try:
        parse(caption)
    except CaptionError as e:
        raise UserError(f"ToyBench scores ToyWorld captions only ('a red cube', 'a blue sphere and a "
                        f"yellow cube'): {e}") from None


def evaluate_toybench(gaussians, caption: str, cfg, render_cfg, models: ToyBenchModels,
                      images_out: Optional[Path] = None, display_out: Optional[Path] = None) -> dict:
    """The ToyBench stage of one run: its views' numbers and the ground truth's from the same cameras.
    images_out: the judged views as a PNG; display_out: the same cameras at `cfg.display_size` px."""
    from metrics.cameras import render_views

    check_caption(caption)
    cams = toybench_cameras(cfg)
    t = time.perf_counter()
    views = render_views(gaussians, cams, render_cfg, tuple(cfg.background), cfg.render_batch)
    images = torch.from_numpy(views).float() / 255.0
    render_s = time.perf_counter() - t
    t = time.perf_counter()
    quantise = lambda x: (x.clamp(0, 1) * 255).round() / 255.0  # like the run's 8-bit views  # noqa: E731
    truth = quantise(ground_truth_views(caption, cams))
    result = score_views(images, truth, caption, cfg, models)
    sample = quantise(ground_truth_views(caption, cams, seed=cfg.reference_seed))
    reference = score_views(sample, truth, caption, cfg, models)
    reference.pop("view_sets")
    if cfg.controls:
        result["controls"] = score_controls(caption, cams, truth, cfg, models)
    result.update(score=result["alignment"], num_views=len(cams), reference=reference, model=models.info,
                  timing={"render_s": render_s, "score_s": time.perf_counter() - t})
    if images_out is not None:
        _write_views_png(images_out, views, cfg)
    if display_out is not None and cfg.display_size:
        large = toybench_cameras(dataclasses.replace(cfg, size=cfg.display_size))
        _write_views_png(display_out, render_views(gaussians, large, render_cfg, tuple(cfg.background),
                                                   cfg.render_batch), cfg)
    return result


def _write_views_png(path: Path, views, cfg) -> None:
    """uint8 views [V, H, W, 3] as one PNG, a row per elevation."""
    from generators.outputs import image_grid, write_png

    write_png(path, image_grid(views, cfg.num_azimuths))
