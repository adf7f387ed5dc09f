"""`python -m harness eval JOB`: score every finished run of a job with the metrics stage.

Scoring is resumable per run and per stage (metrics/evaluate.py keeps what is already scored), so
the command can be re-run after an interruption. Runs that are not done are listed, not scored.
"""

from __future__ import annotations

import json
from pathlib import Path

from generators.errors import UserError


def evaluate_job(job: str, results: Path, *, models: str = "t3bench", stages: str | None = None,
                 device: str | None = None, overrides: list[str] | None = None, force: bool = False) -> int:
    from harness.report import resolve_job
    from metrics.__main__ import build_config
    from metrics.config import STAGES
    from metrics.evaluate import evaluate_runs

    name, specs = resolve_job(job, results)
    wanted = [s.strip() for s in (stages or ",".join(STAGES)).split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise UserError(f"unknown stage(s) {', '.join(unknown)} (valid: {', '.join(STAGES)})")
    run_dirs = [spec.run_dir(results) for spec in specs]
    present = [d for d in run_dirs if d.is_dir()]
    print(f"eval {name}: {len(present)} of {len(run_dirs)} planned runs exist; stages {','.join(wanted)}")
    if not present:
        return 1
    cfg = build_config(models, device, overrides or [])
    summary = evaluate_runs(present, cfg, wanted, force)
    print(json.dumps({k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in summary.items()}))
    return 1 if summary["failed"] or summary["skipped"] or len(present) < len(run_dirs) else 0
