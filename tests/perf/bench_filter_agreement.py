"""Benchmark: does the cheap filter decide as the exact one does? (not a test)

    PYTHONPATH=. python tests/perf/bench_filter_agreement.py [--sets tiny,toy] [--steps 150]

Runs `anchords-ipa-filter-exact` (x0_hat decoded, pixel MSE against the render: the released
decision) on each model set, and at every step also computes the cheap decision
(`latent-calibrated`: the codec's floor + gain x latent L_rec, no decode) on the same x0_hat. Per
set it reports the fraction of views where both keep or both drop, at the preset's gamma and at a
gamma that splits the exact L_rec values in half (the harder case: half the views sit near it).
Writes results/perf/filter_agreement.json atomically.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

import generators.guidance.guide as guide_module
from generators.guidance.pseudo_source import FilterDecision
from generators.io import atomic_write_json
from generators.methods import resolve_run_config
from generators.models.loader import load_models
from generators.train import required_components, train

EXACT = "anchords-ipa-filter-exact"
PROMPTS = {
    "tiny": ["a red apple", "a wooden chair"],
    "toy": ["a red cube", "a green cone", "a red cube and a yellow cone", "a green cube and a blue sphere"],
}


class ShadowFilter(FilterDecision):
    """The exact filter, which also computes the cheap decision on the same inputs and records both."""

    records: list[tuple[float, float]] = []
    calibration = None

    def __init__(self, codec, cfg):
        super().__init__(codec, cfg)
        cheap = type(cfg)(**{**vars(cfg), "space": "latent-calibrated"})
        self.cheap = FilterDecision(codec, cheap)

    def l_rec(self, x0_hat, latents, images, l_rec_latent, decoded=None):
        exact = super().l_rec(x0_hat, latents, images, l_rec_latent, decoded)
        cheap = self.cheap.l_rec(x0_hat, latents, images, l_rec_latent, decoded)
        ShadowFilter.calibration = self.cheap.calibration
        ShadowFilter.records.extend(zip(exact.tolist(), cheap.tolist()))
        return exact


def agreement(records: list[tuple[float, float]], gamma: float) -> dict:
    exact = [e <= gamma for e, _ in records]
    cheap = [c <= gamma for _, c in records]
    return {"gamma": gamma, "agreement": sum(a == b for a, b in zip(exact, cheap)) / len(records),
            "exact_keep_rate": sum(exact) / len(records), "cheap_keep_rate": sum(cheap) / len(records)}


def measure(models_name: str, prompts: list[str], steps: int) -> dict:
    ShadowFilter.records = []
    for prompt in prompts:
        cfg = resolve_run_config(EXACT, prompt=prompt, models=models_name,
                                 overrides={"steps": steps, "checkpoint_every": 10**9})
        models = load_models(cfg.models, required_components(cfg), "cpu")
        with tempfile.TemporaryDirectory() as tmp:
            train(cfg, models, Path(tmp), torch.device("cpu"))
    records = list(ShadowFilter.records)
    gamma = cfg.guidance.filter.gamma
    median = statistics.median(e for e, _ in records)
    cal = ShadowFilter.calibration
    return {"models": models_name, "prompts": prompts, "steps": steps, "views": len(records),
            "calibration": {"floor": cal.floor, "gain": cal.gain},
            "at_preset_gamma": agreement(records, gamma), "at_median_gamma": agreement(records, median)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sets", default="tiny,toy")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", type=Path, default=Path("results/perf/filter_agreement.json"))
    args = p.parse_args()
    guide_module.FilterDecision = ShadowFilter  # the runs below build their filter from this name
    rows = []
    for name in args.sets.split(","):
        rows.append(measure(name, PROMPTS.get(name, PROMPTS["tiny"]), args.steps))
        r = rows[-1]
        print(f"{name}: {r['views']} views, floor {r['calibration']['floor']:.4f} gain {r['calibration']['gain']:.4f}; "
              f"agreement {r['at_preset_gamma']['agreement']:.4f} at gamma {r['at_preset_gamma']['gamma']} "
              f"(exact keeps {r['at_preset_gamma']['exact_keep_rate']:.3f}), "
              f"{r['at_median_gamma']['agreement']:.4f} at the median gamma {r['at_median_gamma']['gamma']:.4f}",
              flush=True)
    atomic_write_json(args.out, {"method": EXACT, "device": "cpu", "torch_threads": torch.get_num_threads(),
                                 "rows": rows})


if __name__ == "__main__":
    main()
