"""Pick each method's CFG from development sweeps, by the rule the sweep jobs state.

    python -m harness.tuning toybench-dev-cfg-prior22k toybench-dev-cfg-anchords-prior22k [--results results]

A sweep is a job whose groups differ only in `guidance.guidance_scale` (jobs/toybench-dev-cfg.yaml,
jobs/toybench-dev-cfg-anchords.yaml), scored and reported (its scores.parquet). The rule, fixed
before any sweep ran: per method, the CFG with the highest mean development alignment over every
run of it (prompts and seeds alike), ties going to the lower CFG. The sweep is read with the job
as it ran (its copy beside its scores, results/<job>/job.yaml), not as jobs/ would plan it today.
A method whose sweep is scored only in part has no pick: the rule needs every run.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from generators.errors import UserError, report_error

METRIC = "toybench_alignment"


@dataclass(frozen=True)
class Sweep:
    """One method's sweep: CFG -> (mean dev alignment, runs scored, runs planned), and its pick."""

    job: str
    method: str
    means: dict  # cfg -> (mean, scored, planned)
    pick: Optional[float]  # None while the sweep is scored only in part


def _cfg_groups(job_file: Path) -> list:
    from harness.jobs import load_job
    from harness.plan import plan_job

    return [s for s in plan_job(load_job(job_file)) if set(s.overrides) == {"guidance"}
            and set(s.overrides["guidance"]) == {"guidance_scale"}]  # CFG-only groups (not e.g. an init-opacity one)


def read_sweeps(jobs: Iterable[str], results: Path) -> list[Sweep]:
    """Every method swept in `jobs` (results/ folder names) with its means and pick."""
    import pandas as pd

    sweeps = []
    for job in jobs:
        folder = Path(results) / job
        if not (folder / "job.yaml").is_file():
            raise UserError(f"{folder}/job.yaml not found: run the sweep first "
                            f"(python -m harness benchmark --job ... --name {job})")
        plan = _cfg_groups(folder / "job.yaml")
        scores_file = folder / "scores.parquet"
        scores = pd.read_parquet(scores_file) if scores_file.is_file() else None
        for method in dict.fromkeys(s.method for s in plan):
            cfg_of = {s.label: s.overrides["guidance"]["guidance_scale"] for s in plan if s.method == method}
            means = {}
            for label, cfg in sorted(cfg_of.items(), key=lambda kv: kv[1]):
                planned = sum(s.label == label for s in plan)
                got = (scores[(scores["label"] == label)][METRIC].dropna() if scores is not None
                       else pd.Series(dtype=float))
                means[cfg] = (float(got.mean()) if len(got) else None, int(len(got)), planned)
            complete = all(scored == planned for _, scored, planned in means.values())
            pick = max(means, key=lambda c: (round(means[c][0], 9), -c)) if complete else None
            sweeps.append(Sweep(job, method, means, pick))
    return sweeps


def dev_picks(jobs: Iterable[str], results: Path) -> dict[str, float]:
    """method -> picked CFG, for the methods whose sweep is completely scored."""
    return {s.method: s.pick for s in read_sweeps(jobs, results) if s.pick is not None}


def format_sweeps(sweeps: list[Sweep]) -> str:
    lines = []
    for s in sweeps:
        cells = ", ".join(f"CFG {c:g}: {'—' if m is None else f'{100 * m:.1f}%'} ({n}/{p})"
                          for c, (m, n, p) in s.means.items())
        verdict = f"pick CFG {s.pick:g}" if s.pick is not None else "no pick yet (runs not all scored)"
        lines.append(f"{s.job} / {s.method}: {cells}: {verdict}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.tuning", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("jobs", nargs="+", help="the sweeps' result folders (job names)")
    ap.add_argument("--results", type=Path, default=Path("results"))
    args = ap.parse_args(argv)
    try:
        sweeps = read_sweeps(args.jobs, args.results)
    except UserError as e:
        return report_error(e)
    if not sweeps:
        print("error: no CFG-only groups in these jobs", file=sys.stderr)
        return 2
    print(format_sweeps(sweeps))
    return 0 if all(s.pick is not None for s in sweeps) else 1


if __name__ == "__main__":
    raise SystemExit(main())
