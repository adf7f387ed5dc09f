"""`python -m generators`: run one generation, or list the methods.

    python -m generators run --method sds --prompt "a red apple" --models tiny --steps 200 --out DIR
    python -m generators methods
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from generators.errors import UserError, report_error


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m generators", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one (method, prompt, seed) generation",
                         description="Optimise 3D Gaussians for one prompt with one method; writes "
                                     "gaussians.ply, views.png, turntable.gif, train_log.parquet, "
                                     "config.yaml and status.json into --out. Re-running resumes from "
                                     "the last checkpoint.")
    run.add_argument("--method", required=True, help="method name (see `python -m generators methods`)")
    run.add_argument("--prompt", required=True, help="the text prompt")
    run.add_argument("--out", type=Path, default=None,
                     help="run directory (created; resumed if it has a checkpoint); not needed with --print-config")
    run.add_argument("--models", default=None,
                     help="model set: tiny (embedded, CPU), toy, sd15, sd21, or a model-set yaml path "
                          "(default: the method's own, e.g. sd15 for anchords-ipa)")
    run.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the method's)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                     help="auto = CUDA when available (default)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config field, e.g. --set guidance.guidance_scale=50 (repeatable)")
    run.add_argument("bare_overrides", nargs="*", metavar="KEY=VALUE",
                     help="overrides without --set, e.g. guidance.guidance_scale=50 steps=600")
    run.add_argument("--config", type=Path, default=None, help="a YAML file of config overrides")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--print-config", action="store_true", help="print the resolved config and exit")

    sub.add_parser("methods", help="list the methods with one line each",
                   description="List every method (generators/methods/presets/*.yaml): its name, default model "
                               "set and one line on what it does.")
    return p


def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, with bare KEY=VALUE overrides accepted anywhere among the options (argparse
    alone takes positionals only in one run): leftovers of that form join `bare_overrides`, any
    other leftover is the usual usage error."""
    args, extra = parser.parse_known_args(argv)
    bare = [a for a in extra if "=" in a and not a.startswith("-")]
    if len(bare) != len(extra) or (bare and not hasattr(args, "bare_overrides")):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in bare or not hasattr(args, 'bare_overrides'))}")
    if bare:
        args.bare_overrides = [*args.bare_overrides, *bare]
    return args


def _overrides(args) -> dict:
    import yaml

    from generators.config import ConfigError, deep_merge, parse_dotted
    from generators.untrusted import safe_load

    data: dict = {}
    if args.config is not None:
        if not args.config.is_file():
            raise UserError(f"{args.config}: config file not found")
        try:
            data = safe_load(args.config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{args.config}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise UserError(f"{args.config}: expected a mapping of config keys")
    try:
        data = deep_merge(data, parse_dotted([*args.overrides, *args.bare_overrides]))
    except ConfigError as e:
        raise UserError(str(e)) from None
    if args.steps is not None:
        data["steps"] = args.steps
    if args.device is not None:
        data["device"] = args.device
    return data


def cmd_methods() -> int:
    from generators.methods import list_methods

    methods = list_methods()
    width = max(len(m.name) for m in methods)
    for m in methods:
        print(f"{m.name:<{width}}  [{m.models}]  {m.description}")
    return 0


def cmd_run(args) -> int:
    import yaml

    from generators.config import config_to_dict
    from generators.methods import resolve_run_config

    if not args.prompt.strip():
        raise UserError("--prompt is empty")
    from generators.untrusted import path_problem
    from prompts.suites import prompt_problem

    problem = prompt_problem(args.prompt)
    if problem:
        raise UserError(f"--prompt: {problem}")
    problem = path_problem(str(args.out)) if args.out is not None else None
    if problem:
        raise UserError(f"--out: {problem}")
    cfg = resolve_run_config(args.method, prompt=args.prompt.strip(), seed=args.seed, models=args.models,
                             overrides=_overrides(args))
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        return 0
    if args.out is None:
        raise UserError("--out is required (the run directory), except with --print-config")
    from generators.train import run_generation  # torch: only when a run really starts

    status = run_generation(cfg, args.out, show_progress=not args.no_progress)
    print(f"{status['state']}: {args.out}  ({status.get('seconds_per_step', float('nan')):.3f} s/step, "
          f"{status.get('num_gaussians', '?')} Gaussians)" + (f"  reason: {status['reason']}" if status.get("reason") else ""))
    return 0 if status["state"] == "done" else 1


def main(argv: list[str] | None = None) -> int:
    from generators.signals import sigterm_as_interrupt

    args = parse_args_with_overrides(_parser(), argv)
    sigterm_as_interrupt()  # `kill`: the run stops resumable and the message below is printed
    try:
        if args.command == "methods":
            return cmd_methods()
        return cmd_run(args)
    except UserError as e:
        return report_error(e)
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
