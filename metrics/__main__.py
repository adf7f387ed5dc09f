"""Command line of the evaluation stage (T3Bench and CLIP score; ToyBench with --models toybench).

    python -m metrics eval RUN_DIR... [--models tiny] [--stages quality,clip] [--device cpu]
                                      [--set quality.width=64 ...] [--set source=mesh] [--force]
    python -m metrics mesh model.obj... --prompt "A pineapple" [--models ...]   # any mesh file, mesh path
    python -m metrics weights t3bench [--dry-run]   # fetch a metric model set (needs hub access);
                                                    # prints the total size first, one weight format

`eval` scores every finished run in (or below) the given folders that has no scores yet, so it
can be re-run after an interruption. Exit codes: 0 all requested runs scored or up to date,
1 some runs failed or were skipped, 2 a user error (bad flag, missing weights).
"""

from __future__ import annotations

import argparse
import json
import sys

from generators.errors import UserError, report_error


def build_config(models: str, device: str | None, overrides: list[str]):
    """EvalConfig = defaults <- the model set's eval_defaults <- --models/--device <- --set."""
    from generators.config import ConfigError, parse_dotted
    from metrics.config import deep_merge, eval_config_from_dict
    from metrics.models import eval_defaults

    deep = deep_merge(eval_defaults(models), {"models": models})
    if device:
        deep["device"] = device
    try:
        deep = deep_merge(deep, parse_dotted(overrides))
        return eval_config_from_dict(deep)
    except ConfigError as e:
        raise UserError(str(e)) from None


def _score_mesh_files(args) -> int:
    """`python -m metrics mesh`: each file scored, one JSON line per file with its scores."""
    from metrics.evaluate import evaluate_mesh_file
    from metrics.models import load_metric_models, parse_stages

    stages = parse_stages(args.stages, args.models)
    cfg = build_config(args.models, args.device, [*args.overrides, "source=mesh"])
    models = load_metric_models(cfg.models, stages, cfg.device, cfg)
    for path in args.meshes:
        record = evaluate_mesh_file(path, args.prompt, cfg, models, stages, args.force)
        print(json.dumps({"mesh": path, **{s: (record.get(s) or {}).get("score") for s in stages}}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from metrics.config import STAGES

    parser = argparse.ArgumentParser(prog="python -m metrics", description="T3Bench quality/alignment and CLIP score")
    sub = parser.add_subparsers(dest="cmd", required=True)
    ev = sub.add_parser("eval", help="score finished runs",
                        description="Score finished run directories with a metric model set; writes each run's "
                                    "metrics.json (stages already scored with the same settings are kept).")
    ev.add_argument("runs", nargs="+", help="run directories, or folders holding run directories")
    ev.add_argument("--models", default="t3bench", help="metric model set name or yaml (default t3bench)")
    ev.add_argument("--stages", default=None, help=f"comma-separated subset of {','.join(STAGES)} "
                                                   f"(default: the metric set's stages)")
    ev.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    ev.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="EvalConfig override, e.g. quality.width=256 (repeatable)")
    ev.add_argument("--force", action="store_true", help="recompute the requested stages even if scored")
    mf = sub.add_parser("mesh", help="score mesh files (e.g. T3Bench's own model.obj exports) on the mesh path",
                        description="Score mesh files (.obj or .ply; e.g. T3Bench's own model.obj exports) with the "
                                    "T3Bench stages, rendered as T3Bench renders meshes.")
    mf.add_argument("meshes", nargs="+", help=".obj or .ply files")
    mf.add_argument("--prompt", required=True, help="the prompt the meshes were made from")
    mf.add_argument("--models", default="t3bench")
    mf.add_argument("--stages", default=None)
    mf.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    mf.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    mf.add_argument("--force", action="store_true")
    w = sub.add_parser("weights", help="download a metric model set into the Hugging Face cache",
                       description="Download every model of a metric model set (e.g. t3bench: ImageReward, "
                                   "BLIP-2, CLIP ViT-L/14) into the Hugging Face cache.")
    w.add_argument("set", help="metric model set name or yaml")
    w.add_argument("--dry-run", action="store_true", help="list the files and the total size, fetch nothing")
    args = parser.parse_args(argv)
    from generators.signals import sigterm_as_interrupt

    sigterm_as_interrupt()  # `kill` ends like Ctrl-C: with the message below
    try:
        if args.cmd == "weights":
            from metrics.models import fetch_weights

            for line in fetch_weights(args.set, dry_run=args.dry_run):
                print(line)
            return 0
        from metrics.evaluate import evaluate_runs
        from metrics.models import parse_stages

        if args.cmd == "mesh":
            return _score_mesh_files(args)

        stages = parse_stages(args.stages, args.models)
        cfg = build_config(args.models, args.device, args.overrides)
        summary = evaluate_runs(args.runs, cfg, stages, args.force)
    except UserError as e:
        return report_error(e)
    except KeyboardInterrupt:
        print("interrupted; the stages already scored are kept (metrics.json is written after each): "
              "run the same command again to score the rest", file=sys.stderr)
        return 130
    print(json.dumps({k: (len(v) if isinstance(v, (list, dict)) else v) for k, v in summary.items()}))
    return 1 if summary["failed"] or summary["skipped"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
