"""`make demo`: one method over a small prompt suite on the embedded models, end to end on CPU."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from generators.errors import UserError

DISCLAIMER = (
    "Note: the `tiny` model set is made of tiny RANDOM networks of the real architecture families. "
    "It exercises the whole pipeline (models, Shap-E init, rendering, guidance, densification, "
    "outputs) but makes no meaningful shapes: the demo shows the pipeline, not quality."
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness demo", description=__doc__)
    p.add_argument("--method", default="sds")
    p.add_argument("--models", default="tiny")
    p.add_argument("--suite", default="demo", help="prompt suite name or .txt path (default: demo)")
    p.add_argument("--out", type=Path, default=Path("results/demo"))
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from generators.methods import resolve_run_config
    from generators.train import run_generation
    from harness.run_ids import run_id
    from prompts import load_suite

    try:
        entries = load_suite(args.suite)
        overrides = {"steps": args.steps} if args.steps else {}
        configs = [resolve_run_config(args.method, prompt=e.prompt, seed=args.seed, models=args.models,
                                      overrides=overrides) for e in entries]
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"demo: method {args.method}, model set {args.models}, {len(entries)} prompts, "
          f"{configs[0].steps} steps each")
    t0 = time.perf_counter()
    rows = []
    for entry, cfg in zip(entries, configs):
        run_dir = args.out / args.method / entry.category / run_id(cfg)
        status_path = run_dir / "status.json"
        if status_path.is_file() and '"done"' in status_path.read_text():
            print(f"  [{entry.category}] {entry.prompt!r}: already done -> {run_dir}")
            rows.append((entry, run_dir, "done (cached)"))
            continue
        status = run_generation(cfg, run_dir)
        rows.append((entry, run_dir, status["state"]))
        print(f"  [{entry.category}] {entry.prompt!r}: {status['state']} in {status.get('wall_time_s', 0):.0f} s "
              f"({status.get('seconds_per_step', float('nan')):.3f} s/step) -> {run_dir}")
    print(f"\ndemo finished in {time.perf_counter() - t0:.0f} s. Outputs (gaussians.ply, views.png, "
          f"turntable.gif, train_log.parquet, config.yaml, status.json):")
    for entry, run_dir, state in rows:
        print(f"  {state:<14} {run_dir}")
    if args.models == "tiny":
        print("\n" + DISCLAIMER)
    return 0 if all(s.startswith("done") for _, _, s in rows) else 1
