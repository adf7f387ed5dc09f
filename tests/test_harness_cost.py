"""`make plan`: GPU-hours of a job from measured step times, else a labelled FLOP lower bound."""

from __future__ import annotations

import json

import pytest

from harness.benchmark import Settings, build_job
from harness.cost import format_costs, job_costs, main


@pytest.fixture
def perf_dir(tmp_path):
    d = tmp_path / "perf"
    d.mkdir()
    # sds measured on the random twin of sd15; anchords-ipa only counted
    (d / "methods_sd15-random_cuda.json").write_text(json.dumps(
        {"device": "NVIDIA H200", "rows": [{"method": "sds", "seconds_per_step": 0.5}]}))
    (d / "flops.json").write_text(json.dumps({
        "peak_bf16_dense_tflops": {"H100 SXM": 1000.0},
        "rows": [{"method": "anchords-ipa", "models": "sd15", "total_flops": 20e12},
                 {"method": "sds", "models": "sd15", "total_flops": 15e12}]}))
    return d


def _job(methods, limit=2, seeds=(0, 1)):
    return build_job(Settings(methods=list(methods), prompts="t3bench", limit=limit, seeds=list(seeds), models="sd15"))


def test_measured_step_time_gives_hours_of_runs_times_steps(perf_dir):
    (cost,) = job_costs(_job(["sds"]), perf_dir=perf_dir)
    assert (cost.runs, cost.steps, cost.models) == (3 * 2 * 2, 1200, "sd15")  # 3 categories x 2 prompts x 2 seeds
    assert cost.seconds_per_step == 0.5 and "NVIDIA H200" in cost.source
    assert cost.gpu_hours == pytest.approx(12 * 1200 * 0.5 / 3600)


def test_unmeasured_method_gets_a_flop_lower_bound_labelled_as_such(perf_dir):
    (cost,) = job_costs(_job(["anchords-ipa"]), perf_dir=perf_dir)
    assert cost.seconds_per_step is None
    assert cost.lower_bound_seconds_per_step == pytest.approx(20e12 / 1000e12)
    assert cost.gpu_hours == pytest.approx(12 * 1200 * 0.02 / 3600)
    text = format_costs("j", [cost])
    assert ">= " in text and "lower bound" in text and "published wall times" in text


def test_nothing_known_is_reported_unknown_not_zero(tmp_path):
    (cost,) = job_costs(_job(["sds"]), perf_dir=tmp_path)
    assert cost.gpu_hours is None
    assert "unknown for sds" in format_costs("j", [cost])


def test_bad_input_exits_2(capsys):
    assert main(["--method", "no-such-method"]) == 2
    assert "no-such-method" in capsys.readouterr().err
