"""Follow a prior's training run: the judged accuracy of its EMA weights every N steps, and when it stops improving.

    python -m generators.toyworld.track_prior --run .cache/toyworld/prior_run [--every 2000] [--per-caption 8]

Beside a running (or stopped) `train_prior`, this polls <run>/checkpoint.pt. Each time the
checkpoint's step has passed the next multiple of --every, it samples the EMA weights with
`sample.evaluate_prior` (the same captions and the same noise at every evaluation, so two steps
differ by the weights alone) and appends a row to <run>/eval_log.csv:

    step, exact_1_object, exact_2_object, exact_all, samples, sample_s

The training is not touched. "Stopped improving" means: the best `exact_all` has not been beaten
by more than --min-gain in the last --patience evaluations. The tracker then writes
<run>/eval_verdict.json and exits 0; stop the training and export (`generators.toyworld.export`).
It also exits after evaluating the recipe's last step. Restarting it continues the log.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from generators.errors import UserError, report_error
from generators.io import atomic_write_json, atomic_write_text
from generators.toyworld.config import PriorTrainConfig, SampleConfig

EVAL_LOG = "eval_log.csv"
VERDICT = "eval_verdict.json"
FIELDS = ("step", "exact_1_object", "exact_2_object", "exact_all", "samples", "sample_s")


@dataclass(frozen=True)
class Plateau:
    """min_gain: an evaluation must beat the best so far by more than this to count as progress
    (about one binomial standard error of exact_all at 512 samples and 85%)."""

    patience: int = 2
    min_gain: float = 0.015


def read_log(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [{k: (int(v) if k in ("step", "samples") else float(v)) for k, v in row.items()}
                for row in csv.DictReader(f)]


def write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def log_row(result: dict) -> dict:
    """One eval_log.csv row from `evaluate_prior`'s result (both categories)."""
    one, two = result["1_object"], result["2_object"]
    n = one["samples"] + two["samples"]
    return {"step": result["step"], "exact_1_object": round(one["exact_set"], 4),
            "exact_2_object": round(two["exact_set"], 4),
            "exact_all": round((one["exact_set"] * one["samples"] + two["exact_set"] * two["samples"]) / n, 4),
            "samples": n, "sample_s": round(one["sample_s"] + two["sample_s"], 1)}


def plateau_verdict(rows: list[dict], rule: Plateau) -> dict | None:
    """None while accuracy is still improving; else the best row and why it counts as stopped.

    Stopped: the last `patience` evaluations all came after the best one (the first row that
    no later row beats by more than min_gain)."""
    if len(rows) <= rule.patience:
        return None
    best_i = 0
    for i, r in enumerate(rows):
        if r["exact_all"] > rows[best_i]["exact_all"] + rule.min_gain:
            best_i = i
    since = len(rows) - 1 - best_i
    if since < rule.patience:
        return None
    return {"best": rows[best_i], "evaluations_since_best": since, "patience": rule.patience,
            "min_gain": rule.min_gain, "last": rows[-1]}


def checkpoint_step(run: Path) -> int | None:
    from generators.toyworld.train_prior import CHECKPOINT

    path = run / CHECKPOINT
    if not path.is_file():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])  # mmap: reads no weights


def evaluate_checkpoint(run: Path, judge_dir: Path, cfg: SampleConfig, per_caption: int, max_two: int) -> dict:
    from generators.toyworld.export import load_run
    from generators.toyworld.judge import load_judge
    from generators.toyworld.sample import evaluate_prior

    model, ck = load_run(run)
    result = evaluate_prior(model, load_judge(judge_dir), cfg, per_caption=per_caption, max_two=max_two,
                            step=int(ck["step"]))
    return log_row(result)


def track(run: Path, judge_dir: Path, every: int, until_step: int, rule: Plateau, cfg: SampleConfig,
          per_caption: int, max_two: int, poll_s: float, once: bool = False, log=print) -> dict | None:
    """Evaluate each `every` steps until the accuracy plateaus or `until_step` is evaluated.
    Returns the verdict (None when it ended without one)."""
    log_path = run / EVAL_LOG
    rows = read_log(log_path)
    while True:
        step = checkpoint_step(run)
        due = step is not None and (not rows or step // every > rows[-1]["step"] // every
                                    or (step >= until_step > rows[-1]["step"]))
        if due:
            row = evaluate_checkpoint(run, judge_dir, cfg, per_caption, max_two)
            rows.append(row)
            write_log(log_path, rows)
            log(f"step {row['step']}: exact set 1 object {row['exact_1_object']:.3f}, "
                f"2 objects {row['exact_2_object']:.3f}, all {row['exact_all']:.3f} ({row['sample_s']} s)")
            verdict = plateau_verdict(rows, rule)
            if verdict is not None:
                atomic_write_json(run / VERDICT, verdict)
                log(f"stopped improving: best step {verdict['best']['step']} "
                    f"(exact set {verdict['best']['exact_all']:.3f}), {verdict['evaluations_since_best']} "
                    f"evaluations without a gain over {rule.min_gain}")
                return verdict
            if row["step"] >= until_step:
                return None
        if once:
            return None
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--judge", type=Path, default=Path("generators/models/toy/judge"))
    ap.add_argument("--every", type=int, default=2000, help="evaluate each time the step passes a multiple of this")
    ap.add_argument("--until-step", type=int, default=PriorTrainConfig.total_steps)
    ap.add_argument("--per-caption", type=int, default=8, help="samples per caption (16 + --max-two captions)")
    ap.add_argument("--max-two", type=int, default=48)
    ap.add_argument("--guidance", type=float, default=SampleConfig.guidance_scale)
    ap.add_argument("--ddim-steps", type=int, default=SampleConfig.steps)
    ap.add_argument("--patience", type=int, default=Plateau.patience)
    ap.add_argument("--min-gain", type=float, default=Plateau.min_gain)
    ap.add_argument("--poll-s", type=float, default=60.0)
    ap.add_argument("--once", action="store_true", help="evaluate if due, then exit (no polling)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if args.every < 1 or args.per_caption < 1 or args.max_two < 1 or args.patience < 1:
        print("error: --every, --per-caption, --max-two and --patience must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    try:
        track(args.run, args.judge, args.every, args.until_step, Plateau(args.patience, args.min_gain),
              SampleConfig(steps=args.ddim_steps, guidance_scale=args.guidance), args.per_caption, args.max_two,
              args.poll_s, once=args.once)
    except (UserError, FileNotFoundError) as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
