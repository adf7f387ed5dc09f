"""The local executor: every run in this process, one after another."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from tqdm.auto import tqdm

from harness.executors import bar_label
from harness.plan import RunSpec
from harness.worker import WorkerOptions, execute_run


def run_local(specs: list[RunSpec], opts: WorkerOptions, show_progress: bool = True) -> dict[str, int]:
    """Run each spec in order; a bar over runs here, a bar over steps from the workload."""
    opts = replace(opts, show_progress=show_progress)
    outcomes: Counter = Counter()
    with tqdm(total=len(specs), desc=bar_label(opts), unit="run", disable=not show_progress) as bar:
        for spec in specs:
            bar.set_postfix_str(f"{spec.label} | {spec.category} | {spec.prompt[:30]}", refresh=True)
            outcomes[execute_run(spec, opts)] += 1
            bar.update(1)
            bar.set_postfix(dict(outcomes), refresh=False)
    return dict(outcomes)
