"""Uncertainty for every report: bootstrap intervals over prompts, paired differences to a baseline.

The unit of resampling is the prompt. Seeds are repeats of a prompt: a prompt's value is the mean
over its seeds, then prompts are resampled with replacement (percentile bootstrap). So a cell's
interval says how much the mean could move with another draw of prompts like these, and a second
seed narrows it only as far as it steadies each prompt's value.

    cell = mean_interval(per_prompt_values)                       # Interval(mean, low, high, n)
    diff = paired_difference(method_by_prompt, baseline_by_prompt, lower_is_better=False,
                             comparisons=4)                       # PairedDifference
    diff.verdict                                                  # "better" | "worse" | "no detectable difference" | ...
    diff.sentence("anchords-ipa", "sds")

Comparisons against one baseline are adjusted for their number with Bonferroni: with k methods
compared, each difference interval is a (1 - 0.05 / k) interval, so the chance that any of the k
claims "better" or "worse" when nothing differs is at most 5%. Cell intervals (one cell, no claim)
stay at 95%. A fixed seed makes every report reproducible to the digit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 5000
SEED = 0  # the bootstrap's generator: the same scores give the same report
ADJUSTMENT = "Bonferroni"
MIN_PROMPTS = 5  # fewer prompts in common: no verdict (a bootstrap over 2-4 values is no evidence)

BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = "better", "worse", "no detectable difference", "too few prompts"


@dataclass(frozen=True)
class Interval:
    mean: float
    low: Optional[float]  # None when there is no interval (fewer than 2 prompts)
    high: Optional[float]
    n: int  # prompts
    confidence: float = CONFIDENCE

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def excludes(self, value: float) -> bool:
        return self.has_interval and (self.low > value or self.high < value)

    def text(self, digits: int = 3, scale: float = 1.0, signed: bool = False) -> str:
        f = (lambda v: f"{v * scale:+.{digits}f}") if signed else (lambda v: f"{v * scale:.{digits}f}")
        if not self.has_interval:
            return f"{f(self.mean)} [no interval: {self.n} prompt{'s' if self.n != 1 else ''}]"
        return f"{f(self.mean)} [{f(self.low)}, {f(self.high)}]"


@dataclass(frozen=True)
class PairedDifference:
    """method - baseline over the prompts both have (each prompt's value averaged over its seeds)."""

    difference: Interval
    better: int  # prompts where the method is better than the baseline
    worse: int
    ties: int
    lower_is_better: bool
    comparisons: int  # how many methods were compared with the baseline (Bonferroni's k)

    @property
    def verdict(self) -> str:
        d = self.difference
        if d.n < MIN_PROMPTS or not d.has_interval:
            return TOO_FEW
        if not d.excludes(0.0):
            return NO_DIFFERENCE
        improves = (d.high < 0.0) if self.lower_is_better else (d.low > 0.0)
        return BETTER if improves else WORSE

    def verdict_text(self, digits: int = 3, scale: float = 1.0) -> str:
        """e.g. 'better (+0.203 [+0.026, +0.375], interval excludes 0)'."""
        v, d = self.verdict, self.difference
        why = {BETTER: "interval excludes 0", WORSE: "interval excludes 0", NO_DIFFERENCE: "interval contains 0",
               TOO_FEW: f"{d.n} prompt{'s' if d.n != 1 else ''} in common, a verdict needs {MIN_PROMPTS}"}[v]
        return f"{'cannot tell' if v == TOO_FEW else v} ({d.text(digits, scale, signed=True)}, {why})"

    def sentence(self, method: str, baseline: str, metric: str, digits: int = 3, scale: float = 1.0) -> str:
        return (f"{method} vs {baseline} on {metric}: {self.verdict_text(digits, scale)}; "
                f"{self.difference.confidence * 100:.2f}% interval ({ADJUSTMENT} over {self.comparisons}); "
                f"better on {self.better} / worse on {self.worse} of {self.difference.n} prompts")


def _finite(values: Sequence[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values if v is not None], dtype=np.float64)
    return a[np.isfinite(a)]


def bootstrap_means(values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """[P] per-prompt values -> [resamples] means of prompts drawn with replacement."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(resamples, len(values)))
    return values[idx].mean(axis=1)


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                  seed: int = SEED) -> Optional[Interval]:
    """Mean of the per-prompt values and its percentile-bootstrap interval (None for no values;
    no interval for one value: one prompt says nothing about the spread)."""
    a = _finite(values)
    if len(a) == 0:
        return None
    if len(a) == 1:
        return Interval(float(a[0]), None, None, 1, confidence)
    means = bootstrap_means(a, resamples, seed)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    # a constant sample has exactly one bootstrap mean: report it exactly, not a rounded quantile
    low, high = min(float(low), float(a.mean())), max(float(high), float(a.mean()))
    return Interval(float(a.mean()), low, high, len(a), confidence)


def adjusted_confidence(comparisons: int, confidence: float = CONFIDENCE) -> float:
    """Bonferroni: each of k intervals at 1 - (1 - confidence) / k."""
    return 1.0 - (1.0 - confidence) / max(1, comparisons)


def paired_difference(method: Mapping, baseline: Mapping, lower_is_better: bool, comparisons: int = 1,
                      confidence: float = CONFIDENCE, resamples: int = RESAMPLES,
                      seed: int = SEED) -> Optional[PairedDifference]:
    """Per-prompt method - baseline over the prompts with a value in both (prompt -> value mappings,
    seeds already averaged: see `per_prompt`). None when no prompt is shared."""
    shared = [p for p in method if p in baseline and _ok(method[p]) and _ok(baseline[p])]
    if not shared:
        return None
    diffs = np.asarray([float(method[p]) - float(baseline[p]) for p in shared])
    interval = mean_interval(diffs, adjusted_confidence(comparisons, confidence), resamples, seed)
    good = -diffs if lower_is_better else diffs
    return PairedDifference(interval, int((good > 0).sum()), int((good < 0).sum()), int((good == 0).sum()),
                            lower_is_better, comparisons)


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def per_prompt(rows: Sequence[dict], value: str | Callable[[dict], Optional[float]],
               prompt_key: str = "prompt") -> dict:
    """prompt -> mean over that prompt's rows (its seeds) of `value` (a column, or a function of the
    row), skipping rows without it."""
    get = value if callable(value) else (lambda r: r.get(value))
    groups: dict = {}
    for r in rows:
        v = get(r)
        if _ok(v):
            groups.setdefault(r[prompt_key], []).append(float(v))
    return {p: float(np.mean(vs)) for p, vs in groups.items()}
