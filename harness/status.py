"""`python -m harness status`: done / running / failed / pending per run group and category.

The run store is the only truth: states are read from the run directories (status.json,
attempts.json, the run lock), never from an executor's bookkeeping.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from harness.plan import RunSpec
from harness.store import DONE, FAILED, PENDING, RUNNING, STATES, run_state


@dataclass
class JobStatus:
    counts: dict = field(default_factory=lambda: defaultdict(Counter))  # (label, category) -> Counter
    failures: list = field(default_factory=list)  # (spec, details)
    interrupted: int = 0  # pending runs with a partial directory (they resume)

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


def job_status(specs: list[RunSpec], results: Path, max_attempts: int) -> JobStatus:
    st = JobStatus()
    for spec in specs:
        state, details = run_state(spec.run_dir(results), max_attempts)
        st.counts[(spec.label, spec.category)][state] += 1
        if state == FAILED:
            st.failures.append((spec, details))
        elif state == PENDING and details.get("interrupted"):
            st.interrupted += 1
    return st


def _failure_kind(d: dict) -> str:
    if d.get("corrupt"):
        return "corrupt file"
    if d.get("user_error"):
        return "needs you; no attempt spent"
    if d.get("deterministic"):
        return "deterministic, not retried"
    return f"{d.get('failures')}/{d.get('max_attempts')} " + ("gave up" if d.get("gave_up") else "will retry")


def render_status(st: JobStatus, title: str, max_failures: int = 20) -> None:
    """Print the table and the failure reasons with rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=title, title_justify="left")
    table.add_column("run group")
    table.add_column("category")
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
    if st.failures:
        console.print(f"failures ({len(st.failures)}):")
        for spec, d in st.failures[:max_failures]:
            console.print(f"  {spec.rel_dir}  [{_failure_kind(d)}]  {d.get('reason') or 'no reason recorded'}",
                          markup=False, soft_wrap=True)
        if len(st.failures) > max_failures:
            console.print(f"  ... and {len(st.failures) - max_failures} more")


__all__ = ["JobStatus", "job_status", "render_status", "DONE", "RUNNING", "FAILED", "PENDING"]
