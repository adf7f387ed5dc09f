"""Where a two-object ToyBench run put its objects: a layout check the judge does not make.

    python -m metrics.toybench_layout toybench-control-two [--results results]

ToyBench's alignment asks whether each view shows the caption's object *set*; it does not look at
where the objects are. A ToyWorld caption "a red cube and a blue sphere" means the two side by side
along world y, the first at -y (on the left from the front). A scene with one object stacked on the
other is read as the same set from every azimuth, so it can score well on alignment and
consistency while being the wrong scene. This reads each run's Gaussians directly:

  - every Gaussian with opacity above `min_opacity` takes the world colour nearest in chromaticity
    to its base colour (as the colour-area quality does for pixels);
  - the opacity-weighted centroid of each caption colour gives the separation d = c2 - c1;
  - vertical = |d_z| / |d|: 0 side by side, 1 one above the other; "stacked" when above 0.7;
  - dy = d_y: positive when the first-named object is on the left, as captioned.

Only captions whose two objects differ in colour can be read this way; the others are skipped.
It is a diagnostic (the positions of two colour clouds), not a score of the benchmark.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

SH_C0 = 0.28209479177387814  # the degree-0 spherical-harmonic constant: colour = sh0 * C0 + 0.5


@dataclass(frozen=True)
class LayoutConfig:
    min_opacity: float = 0.05  # Gaussians fainter than this are ignored (the initial ball's haze)
    min_gaussians: int = 5  # a colour with fewer Gaussians counts as absent
    stacked_above: float = 0.7  # vertical share of the separation above which the objects are stacked


def caption_colours(caption: str) -> Optional[tuple[str, str]]:
    """The two objects' colours of a two-object caption; None when not two distinct colours."""
    from generators.toyworld.world import parse

    objects = parse(caption).objects
    if len(objects) != 2 or objects[0].colour == objects[1].colour:
        return None
    return objects[0].colour, objects[1].colour


@torch.no_grad()
def two_object_layout(gaussians, caption: str, cfg: LayoutConfig = LayoutConfig()) -> Optional[dict]:
    """{"vertical", "dy", "distance", "stacked"} of the caption's two colour clouds; None when unreadable."""
    from generators.toyworld.config import COLOURS, ShadingConfig

    colours = caption_colours(caption)
    if colours is None:
        return None
    p = gaussians.params
    rgb = (p["sh0"][:, 0] * SH_C0 + 0.5).clamp(0, 1)  # [N, 3]
    opacity = torch.sigmoid(p["opacities"])  # [N]
    palette = torch.tensor([ShadingConfig().colours_rgb[c] for c in COLOURS], dtype=rgb.dtype)
    palette = palette / palette.sum(dim=1, keepdim=True)
    chroma = rgb / rgb.sum(dim=1, keepdim=True).clamp_min(1e-6)
    nearest = ((chroma[:, None, :] - palette) ** 2).sum(dim=-1).argmin(dim=1)  # [N]
    centroids = []
    for colour in colours:
        keep = (nearest == COLOURS.index(colour)) & (opacity > cfg.min_opacity)
        if int(keep.sum()) < cfg.min_gaussians:
            return None
        w = opacity[keep]
        centroids.append((p["means"][keep] * w[:, None]).sum(dim=0) / w.sum())
    d = centroids[1] - centroids[0]
    distance = float(d.norm())
    if distance == 0.0:
        return None
    vertical = float(d[2].abs()) / distance
    return {"vertical": vertical, "dy": float(d[1]), "distance": distance, "stacked": vertical > cfg.stacked_above}


def run_layout(run_dir: Path, caption: str, cfg: LayoutConfig = LayoutConfig()) -> Optional[dict]:
    """{"vertical", "dy", "distance", "stacked"} of a finished run's gaussians.ply; None when the
    caption has no two distinct colours or the run has no readable file or clouds."""
    from generators.gaussians.ply import load_ply

    ply = Path(run_dir) / "gaussians.ply"
    if caption_colours(caption) is None or not ply.is_file():
        return None
    try:
        return two_object_layout(load_ply(ply), caption, cfg)
    except (OSError, ValueError, RuntimeError, KeyError):  # a damaged file is no layout, not a crash
        return None


def job_layout(job: str, results: Path, cfg: LayoutConfig = LayoutConfig()):
    """One row per finished two-object run of a job: label, prompt, seed and its layout numbers."""
    import pandas as pd

    from harness.evaluate import load_job_and_plan

    _, specs = load_job_and_plan(job, results)
    rows = []
    for spec in specs:
        layout = run_layout(spec.run_dir(results), spec.prompt, cfg)
        if layout is not None:
            rows.append({"label": spec.label, "prompt": spec.prompt, "seed": spec.seed, **layout})
    return pd.DataFrame(rows)


def truth_layout(captions, cfg: LayoutConfig = LayoutConfig()):
    """The positive control: the same numbers for each caption's true scene fitted as Gaussians
    (metrics.toybench_controls; cached fits are reused): side by side, the first on the left."""
    import pandas as pd

    from metrics.toybench_controls import ControlConfig, fitted_true_scene

    rows = []
    for caption in dict.fromkeys(captions):
        if caption_colours(caption) is None:
            continue
        layout = two_object_layout(fitted_true_scene(caption, ControlConfig(), log=None), caption, cfg)
        if layout is not None:
            rows.append({"label": "control: fitted truth", "prompt": caption, "seed": None, **layout})
    return pd.DataFrame(rows)


def summarise(df):
    """Per label, in order of appearance, of rows with label, vertical, dy and stacked: runs, mean
    vertical, stacked %, mean dy, first-named object on the left %."""
    table = df.groupby("label", sort=False).agg(runs=("vertical", "size"), vertical=("vertical", "mean"),
                                                stacked_pct=("stacked", "mean"), dy=("dy", "mean"),
                                                first_on_left_pct=("dy", lambda v: (v > 0).mean()))
    table[["stacked_pct", "first_on_left_pct"]] *= 100
    return table


def main(argv: Optional[list[str]] = None) -> int:
    from generators.errors import UserError, report_error

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", help="job name (its saved plan in RESULTS/<job>/) or job file")
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--no-truth", action="store_true", help="skip the fitted-truth control row (fits when not cached)")
    args = ap.parse_args(argv)
    try:
        df = job_layout(args.job, args.results)
    except UserError as e:
        return report_error(e)
    if df.empty:
        print("no finished two-object runs with two distinct colours")
        return 1
    if not args.no_truth:
        import pandas as pd

        df = pd.concat([df, truth_layout(df["prompt"])], ignore_index=True)
    print(summarise(df).round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
