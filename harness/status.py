"""`python -m harness status`: done / running / failed / pending per run group and category.

The run store is the only truth: states are read from the run directories (status.json,
attempts.json, the run lock), never from an executor's bookkeeping.

Progress: a running run rewrites progress.json at every checkpoint (generators/outputs.py:
step k of N, loss, Gaussians, s/step, ETA); status shows each running run at step k/N with its
ETA, and the job's ETA from the measured step times (job_eta). Provenance: finished runs whose
status.json names another code version (git commit) than this checkout are counted and listed;
the reuse policy (benchmark --other-code reuse | rerun, OTHER_CODE_POLICIES) says what happens
to them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.plan import RunSpec
from harness.store import DONE, FAILED, PENDING, RUNNING, STATES, read_json, run_state

PROGRESS_FILE = "progress.json"  # generators.outputs.RUN_FILES["progress"] (not imported: it pulls torch)
STATUS_FILE = "status.json"
# What `benchmark` does with a finished run made by another code version (benchmark --other-code):
REUSE, RERUN = "reuse", "rerun"
OTHER_CODE_POLICIES = {
    REUSE: "reuse: a finished run counts as done whatever code version made it (the default)",
    RERUN: "rerun: a finished run made by another code version is moved aside (kept) and run again",
}
UNRECORDED = "unrecorded"  # runs finished before the code version was recorded


def other_code_version(run_dir: Path, current: str) -> Optional[str]:
    """The code version that made a finished run when it is not `current` (UNRECORDED when the
    run does not say), else None."""
    status = read_json(run_dir / STATUS_FILE) or {}
    version = status.get("code_version") or UNRECORDED
    return None if version == current else version


@dataclass
class RunProgress:
    spec: RunSpec
    step: int
    steps: int
    seconds_per_step: Optional[float]
    eta_s: Optional[float]
    loss: Optional[float] = None
    num_gaussians: Optional[int] = None


@dataclass
class JobStatus:
    counts: dict = field(default_factory=lambda: defaultdict(Counter))  # (label, category) -> Counter
    failures: list = field(default_factory=list)  # (spec, details)
    interrupted: int = 0  # pending runs with a partial directory (they resume)
    running: list = field(default_factory=list)  # RunProgress of running runs with a progress.json
    other_code: list = field(default_factory=list)  # (spec, its code version): done by another code version
    run_seconds: list = field(default_factory=list)  # measured seconds per finished run (wall_time_s)
    code_version: str = "unknown"  # this checkout's

    def total(self) -> Counter:
        out: Counter = Counter()
        for c in self.counts.values():
            out.update(c)
        return out

    @property
    def needs_user(self) -> list:
        """The failures the user has to act on (a corrupt file, missing weights, a bad setting)."""
        return [(spec, d) for spec, d in self.failures if d.get("corrupt") or d.get("user_error")]

    @property
    def complete(self) -> bool:
        t = self.total()
        return t[DONE] == sum(t.values())


def _number(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def job_status(specs: list[RunSpec], results: Path, max_attempts: int) -> JobStatus:
    from generators.provenance import code_version

    st = JobStatus(code_version=code_version())
    for spec in specs:
        run_dir = spec.run_dir(results)
        state, details = run_state(run_dir, max_attempts)
        st.counts[(spec.label, spec.category)][state] += 1
        if state == FAILED:
            st.failures.append((spec, details))
        elif state == PENDING and details.get("interrupted"):
            st.interrupted += 1
        elif state == DONE:
            status = read_json(run_dir / STATUS_FILE) or {}
            version = other_code_version(run_dir, st.code_version)
            if version is not None:
                st.other_code.append((spec, version))
            if _number(status.get("wall_time_s")):
                st.run_seconds.append(float(status["wall_time_s"]))
        elif state == RUNNING:
            p = read_json(run_dir / PROGRESS_FILE)
            if p and _number(p.get("step")) is not None and _number(p.get("steps")):
                st.running.append(RunProgress(spec, int(p["step"]), int(p["steps"]), _number(p.get("seconds_per_step")),
                                              _number(p.get("eta_s")), _number(p.get("loss")), p.get("num_gaussians")))
    return st


def _failure_kind(d: dict) -> str:
    if d.get("corrupt"):
        return "corrupt file"
    if d.get("user_error"):
        return "needs you; no attempt spent"
    if d.get("deterministic"):
        return "deterministic, not retried"
    return f"{d.get('failures')}/{d.get('max_attempts')} " + ("gave up" if d.get("gave_up") else "will retry")


def job_eta(st: JobStatus) -> Optional[float]:
    """Seconds until the job is done, from measured times: the running runs' ETAs, plus the
    pending runs at the median run time (finished runs' wall time, else steps x s/step of the
    running ones), spread over as many runs at once as are running now. None without a measure."""
    import statistics

    t = st.total()
    pending = t[PENDING]
    running_eta = [r.eta_s for r in st.running if r.eta_s is not None]
    per_run = st.run_seconds or [r.steps * r.seconds_per_step for r in st.running if r.seconds_per_step]
    if not running_eta and not (pending and per_run):
        return None if pending or t[RUNNING] else 0.0
    parallel = max(1, t[RUNNING])
    work = sum(running_eta) + (pending * statistics.median(per_run) if pending and per_run else 0.0)
    return work / parallel


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


WIDE_OUTPUT = 200  # columns for `harness status` printed to a file or pipe


def render_status(st: JobStatus, title: str, max_failures: int = 20) -> None:
    """Print the table and the failure reasons with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe has no width to respect: print every name whole
        console = Console(highlight=False, width=max(console.width, WIDE_OUTPUT))
    table = Table(title=title, title_justify="left")
    # in a narrow terminal the names fold onto more lines instead of being cut: "anchords-ipa-f…"
    # could be -filter or -finetune
    table.add_column("run group", overflow="fold")
    table.add_column("category", overflow="fold")
    for s in STATES:
        table.add_column(s, justify="right")
    table.add_column("total", justify="right")
    for (label, category), c in st.counts.items():
        table.add_row(label, category, *(str(c[s]) for s in STATES), str(sum(c.values())))
    t = st.total()
    table.add_section()
    table.add_row("all", "", *(str(t[s]) for s in STATES), str(sum(t.values())))
    console.print(table)
    if st.interrupted:
        console.print(f"{st.interrupted} pending run(s) were interrupted and resume from their checkpoints.")
    if st.running:
        console.print(f"running ({len(st.running)} with progress):")
        for r in st.running:
            sps = "?" if r.seconds_per_step is None else f"{r.seconds_per_step:.3g}"
            console.print(f"  {r.spec.rel_dir}  step {r.step}/{r.steps}  {sps} s/step  ETA {_duration(r.eta_s)}"
                          + (f"  loss {r.loss:.4g}" if r.loss is not None else "")
                          + (f"  {r.num_gaussians} Gaussians" if r.num_gaussians is not None else ""),
                          markup=False, soft_wrap=True)
    if t[DONE] < sum(t.values()):
        console.print(f"job ETA: {_duration(job_eta(st))} (from measured step and run times)")
    if st.other_code:
        console.print(f"{len(st.other_code)} finished run(s) were made by another code version than this "
                      f"checkout ({st.code_version[:12]}). Reuse policy, `benchmark --other-code`: "
                      + "; ".join(OTHER_CODE_POLICIES.values()) + ".", markup=False, soft_wrap=True)
        for spec, version in st.other_code[:max_failures]:
            console.print(f"  {spec.rel_dir}  code {version[:12]}", markup=False, soft_wrap=True)
    if st.failures:
        console.print(f"failures ({len(st.failures)}):")
        for spec, d in st.failures[:max_failures]:
            console.print(f"  {spec.rel_dir}  [{_failure_kind(d)}]  {d.get('reason') or 'no reason recorded'}",
                          markup=False, soft_wrap=True)
        if len(st.failures) > max_failures:
            console.print(f"  ... and {len(st.failures) - max_failures} more")


__all__ = ["JobStatus", "RunProgress", "job_eta", "job_status", "render_status", "DONE", "RUNNING", "FAILED", "PENDING"]
