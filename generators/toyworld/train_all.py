"""Retrain every ToyWorld network from scratch with the recipe's fixed seeds (`make toyworld-train`).

    python -m generators.toyworld.train_all [--threads 1] [--run .cache/toyworld/prior_run]

1. the judge           -> trained from scratch into <run>/../judge_base/, then fine-tuned for Gaussian
                          renders (JUDGE_GAUSSIAN_FINETUNE) into generators/models/toy/judge/
2. the prior           -> <run>/ (resumable: rerunning continues where it stopped)
3. export (EMA)        -> generators/models/toy/weights/ (the `toy` model set)
4. sample evaluation   -> generators/models/toy/weights/training/eval.json (judge on DDIM+CFG samples)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from generators.toyworld import export, sample, train_judge, train_prior

TOY = Path(__file__).resolve().parents[1] / "models" / "toy"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--run", type=Path, default=Path(".cache/toyworld/prior_run"))
    ap.add_argument("--skip-judge", action="store_true", help="keep the existing judge")
    args = ap.parse_args(argv)
    t = ["--threads", str(args.threads)]
    if not args.skip_judge:
        base = args.run.parent / "judge_base"
        if rc := train_judge.main(["--out", str(base)] + t):
            return rc
        if rc := train_judge.main(["--finetune-from", str(base), "--out", str(TOY / "judge")] + t):
            return rc
    if rc := train_prior.main(["--out", str(args.run), "--resume"] + t):
        return rc
    if rc := export.main(["--run", str(args.run), "--out", str(TOY / "weights")]):
        return rc
    return sample.main(["--run", str(args.run), "--judge", str(TOY / "judge"),
                        "--out", str(TOY / "weights" / "training" / "eval.json")] + t)


if __name__ == "__main__":
    raise SystemExit(main())
