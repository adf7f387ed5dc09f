"""harness.stats against cases whose answer is known: a constant shift, pure noise, one prompt,
seeds as repeats, the Bonferroni widening and the fixed seed."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import (BETTER, NO_DIFFERENCE, TOO_FEW, WORSE, adjusted_confidence, mean_interval,
                           paired_difference, per_prompt)


def test_a_constant_shift_gives_exactly_that_shift_and_excludes_zero():
    rng = np.random.default_rng(1)
    base = {f"p{i}": float(v) for i, v in enumerate(rng.uniform(0, 1, 30))}
    shifted = {p: v + 0.2 for p, v in base.items()}
    d = paired_difference(shifted, base, lower_is_better=False, comparisons=4)
    assert d.difference.mean == pytest.approx(0.2)
    assert d.difference.low == pytest.approx(0.2) and d.difference.high == pytest.approx(0.2)
    assert d.difference.excludes(0.0) and d.verdict == BETTER
    assert (d.better, d.worse, d.ties) == (30, 0, 0)
    # the same shift on an error (lower is better) is worse
    assert paired_difference(shifted, base, lower_is_better=True).verdict == WORSE
    assert "better (+0.200 [+0.200, +0.200], interval excludes 0)" in d.sentence("m", "sds", "alignment")


def test_pure_noise_gives_an_interval_that_contains_zero():
    rng = np.random.default_rng(7)
    base = {f"p{i}": float(v) for i, v in enumerate(rng.normal(0, 1, 40))}
    noisy = {p: v + float(rng.normal(0, 1)) for p, v in base.items()}
    d = paired_difference(noisy, base, lower_is_better=False)
    assert d.difference.low < 0.0 < d.difference.high
    assert d.verdict == NO_DIFFERENCE and "no detectable difference (" in d.verdict_text()
    assert d.better + d.worse + d.ties == 40


def test_a_real_but_noisy_gain_is_found_and_the_interval_covers_it():
    rng = np.random.default_rng(3)
    base = {f"p{i}": float(v) for i, v in enumerate(rng.normal(0, 1, 60))}
    gain = {p: v + 0.5 + float(rng.normal(0, 0.5)) for p, v in base.items()}
    d = paired_difference(gain, base, lower_is_better=False)
    assert d.verdict == BETTER and d.difference.low < 0.5 < d.difference.high


def test_one_prompt_has_no_interval_and_no_verdict():
    cell = mean_interval([0.7])
    assert cell.mean == 0.7 and not cell.has_interval and "1 prompt" in cell.text()
    d = paired_difference({"a": 0.9}, {"a": 0.1, "b": 0.5}, lower_is_better=False)
    assert d.difference.n == 1 and d.verdict == TOO_FEW and "cannot tell" in d.verdict_text()
    assert mean_interval([]) is None and paired_difference({"a": 1.0}, {"b": 1.0}, False) is None


def test_seeds_are_repeats_of_a_prompt():
    rows = [{"prompt": "a", "x": 1.0}, {"prompt": "a", "x": 3.0}, {"prompt": "b", "x": 5.0},
            {"prompt": "b", "x": None}, {"prompt": "c", "x": float("nan")}]
    assert per_prompt(rows, "x") == {"a": 2.0, "b": 5.0}
    assert per_prompt(rows, lambda r: None if r["x"] is None else 2 * r["x"])["a"] == 4.0


def test_bonferroni_widens_the_interval_and_the_seed_fixes_it():
    rng = np.random.default_rng(5)
    base = {f"p{i}": float(v) for i, v in enumerate(rng.normal(0, 1, 25))}
    other = {p: v + float(rng.normal(0.3, 1)) for p, v in base.items()}
    one = paired_difference(other, base, False, comparisons=1).difference
    four = paired_difference(other, base, False, comparisons=4).difference
    assert four.confidence == pytest.approx(adjusted_confidence(4)) == pytest.approx(0.9875)
    assert four.low < one.low and four.high > one.high
    again = paired_difference(other, base, False, comparisons=1).difference
    assert (again.low, again.high) == (one.low, one.high)


def test_a_few_prompts_get_no_verdict_even_with_a_clean_shift():
    base = {f"p{i}": float(i) for i in range(4)}
    d = paired_difference({p: v + 1.0 for p, v in base.items()}, base, lower_is_better=False)
    assert d.difference.excludes(0.0) and d.verdict == TOO_FEW
    assert "cannot tell" in d.verdict_text() and "a verdict needs 5" in d.verdict_text()


def test_t3bench_rows_get_intervals_and_a_verdict_per_metric():
    """The report's T3Bench section: Avg per prompt = (quality + (rating - 1) / 4 * 100) / 2."""
    from harness.report import T3BENCH_STATS
    from harness.report_stats import comparison_sentences, uncertainty_section

    rows = []
    for i in range(6):
        for seed in (0, 1):
            rows.append({"label": "sds", "method": "sds", "models": "sd15", "category": "single", "prompt": f"p{i}",
                         "seed": seed, "quality": 40.0 + i, "alignment_rating": 3.0})
            rows.append({"label": "anchords", "method": "anchords-ipa", "models": "sd15", "category": "single",
                         "prompt": f"p{i}", "seed": seed, "quality": 50.0 + i, "alignment_rating": 3.0})
    text = "\n".join(uncertainty_section(rows, ["single"], T3BENCH_STATS, "sds"))
    assert "| single | **sds** | 6 x 2 | 46.2 [" in text  # Avg = (42.5 + 50) / 2
    assert "| single | **anchords** | +5.0 [+5.0, +5.0], 6/0: better | +10.0 [+10.0, +10.0], 6/0: better | " \
           "+0.0 [+0.0, +0.0], 0/0: no detectable difference |" in text
    sentence = comparison_sentences(rows, ["single"], T3BENCH_STATS, "sds")[0]
    assert sentence.startswith("single, anchords vs sds: Avg better (+5.0 [+5.0, +5.0], interval excludes 0)")
