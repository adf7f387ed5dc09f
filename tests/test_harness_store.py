"""The run store and the worker: locks, skips, failures with reasons, bounded retries, --force."""

from __future__ import annotations

import json
import time

import pytest

from harness.jobs import parse_job
from harness.plan import plan_job
from harness.status import job_status
from harness.store import DONE, FAILED, PENDING, RUNNING, USER_ERROR, Attempts, run_lock, run_state
from harness.worker import CACHED, LOCKED, WorkerOptions, execute_run

COUNTER = "harness.workloads:counter"


@pytest.fixture(autouse=True)
def fast_counter(monkeypatch):
    monkeypatch.setenv("HARNESS_COUNTER_SLEEP_S", "0")


def _specs(tmp_path, prompts: list[str], steps: int = 4):
    path = tmp_path / "cat.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    return plan_job(parse_job({"name": "t", "prompts": str(path), "methods": ["sds"], "models": "tiny",
                               "overrides": {"steps": steps}}, "test"))


def _executions(run_dir) -> list[tuple[str, int]]:
    return [(p, int(s)) for p, s in (line.split() for line in (run_dir / "executions.log").read_text().splitlines())]


def test_a_run_that_raises_is_recorded_and_retried_and_the_others_complete(tmp_path):
    specs = _specs(tmp_path, ["a red apple", "it will explode", "a blue car"])
    opts = WorkerOptions(results=str(tmp_path / "r"), max_attempts=3, workload=COUNTER)
    outcomes = [execute_run(s, opts) for s in specs]
    assert outcomes == [DONE, FAILED, DONE]
    bad = specs[1].run_dir(opts.results)
    attempts = json.loads((bad / "attempts.json").read_text())
    assert attempts["count"] == 3 and attempts["failures"] == 3
    assert "explode" in attempts["last_reason"] and attempts["last_reason"].startswith("RuntimeError")
    assert "Traceback" in attempts["traceback_tail"] and "counter" in attempts["traceback_tail"]
    assert [h["outcome"] for h in attempts["history"]] == [FAILED] * 3
    # given up: a later invocation does not run it again ...
    assert execute_run(specs[1], opts) == FAILED
    # retries resume from the checkpoint written after step 0: steps 0, 1, then 1 and 1 again
    assert [step for _, step in _executions(bad)] == [0, 1, 1, 1]
    # ... unless asked to
    retry = WorkerOptions(results=opts.results, max_attempts=3, workload=COUNTER, retry_failed=True)
    assert execute_run(specs[1], retry) == FAILED
    assert json.loads((bad / "attempts.json").read_text())["count"] == 6
    st = job_status(specs, tmp_path / "r", max_attempts=3)
    assert st.total()[DONE] == 2 and st.total()[FAILED] == 1
    assert "explode" in st.failures[0][1]["reason"] and st.failures[0][1]["gave_up"]


def test_a_done_run_is_skipped_and_a_locked_run_is_left_to_its_holder(tmp_path):
    (spec,) = _specs(tmp_path, ["a red apple"])
    opts = WorkerOptions(results=str(tmp_path / "r"), workload=COUNTER)
    run_dir = spec.run_dir(opts.results)
    lock = run_lock(run_dir)
    lock.acquire()
    try:
        assert execute_run(spec, opts) == LOCKED
        assert not run_dir.exists()
        assert job_status([spec], tmp_path / "r", 3).total()[PENDING] == 1  # no directory yet
        run_dir.mkdir(parents=True)
        assert job_status([spec], tmp_path / "r", 3).total()[RUNNING] == 1
    finally:
        lock.release()
    assert execute_run(spec, opts) == DONE
    before = (run_dir / "executions.log").read_text()
    assert execute_run(spec, opts) == CACHED
    assert (run_dir / "executions.log").read_text() == before


def test_force_moves_the_old_run_aside_and_runs_again_once(tmp_path):
    (spec,) = _specs(tmp_path, ["a red apple"])
    results = tmp_path / "r"
    opts = WorkerOptions(results=str(results), workload=COUNTER)
    assert execute_run(spec, opts) == DONE
    old_rows = (spec.run_dir(results) / "rows.json").read_text()
    time.sleep(0.01)
    forced = WorkerOptions(results=str(results), workload=COUNTER, force_before=time.time())
    assert execute_run(spec, forced) == DONE
    aside = list(spec.run_dir(results).parent.glob(f"{spec.run_id}.replaced-*"))
    assert len(aside) == 1 and (aside[0] / "rows.json").read_text() == old_rows
    # a second forced worker of the same invocation finds it redone after its start: kept
    assert execute_run(spec, forced) == CACHED
    assert len(list(spec.run_dir(results).parent.glob(f"{spec.run_id}.replaced-*"))) == 1


def test_an_interrupted_attempt_is_marked_and_does_not_count_as_a_failure(tmp_path):
    (spec,) = _specs(tmp_path, ["a red apple"])
    results = tmp_path / "r"
    run_dir = spec.run_dir(results)
    run_dir.mkdir(parents=True)
    Attempts().start(run_dir, "local")  # an attempt that never finished (killed)
    (run_dir / "status.json").write_text(json.dumps({"state": "running"}))
    assert job_status([spec], results, 3).interrupted == 1
    assert execute_run(spec, WorkerOptions(results=str(results), max_attempts=1, workload=COUNTER)) == DONE
    a = Attempts.read(run_dir)
    assert [h["outcome"] for h in a.history] == ["interrupted", DONE] and a.failures == 0


def raises_user_error(spec, run_dir, show_progress=False):
    """A workload whose run can never succeed as configured (missing weights, bad settings)."""
    from generators.errors import MissingWeightsError

    raise MissingWeightsError("stable-diffusion-v1-5/stable-diffusion-v1-5 is not on this machine")


def test_a_user_error_is_recorded_once_not_retried_and_spends_no_attempt(tmp_path):
    (spec,) = _specs(tmp_path, ["a red apple"])
    opts = WorkerOptions(results=str(tmp_path / "r"), max_attempts=3,
                         workload=f"{__name__}:raises_user_error")
    for _ in range(4):  # more invocations than max_attempts: never given up
        assert execute_run(spec, opts) == USER_ERROR
    attempts = json.loads((spec.run_dir(opts.results) / "attempts.json").read_text())
    assert attempts["count"] == 4 and attempts["failures"] == 0
    assert attempts["last_reason"].startswith("MissingWeightsError")
    state, details = run_state(spec.run_dir(opts.results), 3)
    assert state == FAILED and details["user_error"] and not details["gave_up"]
    assert "not on this machine" in details["reason"]
    # fixed (the weights arrive): the same command runs it
    assert execute_run(spec, WorkerOptions(results=opts.results, max_attempts=3, workload=COUNTER)) == DONE
