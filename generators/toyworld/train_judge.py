"""Train the ToyWorld judge from scratch with fixed seeds, then evaluate it on held-out renders.

    python -m generators.toyworld.train_judge --out generators/models/toy/judge --threads 1

Writes into --out: judge.safetensors, judge.json, train_curve.csv, eval.json, recipe.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from generators.io import atomic_write_json, atomic_write_text
from generators.toyworld.config import (JUDGE_GAUSSIAN_FINETUNE, JUDGE_SCALE_FINETUNE, JudgeConfig, SceneSampling,
                                        WorldConfig)
from generators.toyworld.data import build_dataset
from generators.toyworld.judge import (JudgeNet, augment, build_judge, halo_bank, labels_from_objects, load_judge,
                                       predict_sets, save_judge)


def judge_loss(logits: dict, labels: dict) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits
    return (bce(logits["objects"], labels["objects"]) * 4.0  # the head the metric reads
            + bce(logits["colours"], labels["colours"]) + bce(logits["shapes"], labels["shapes"])
            + F.cross_entropy(logits["count"], labels["count"] - 1))


@torch.no_grad()
def evaluate(net: JudgeNet, images: torch.Tensor, objects: torch.Tensor, batch_size: int = 512) -> dict:
    """Held-out accuracy per scene size: exact object set, colour set, shape set, count."""
    net.eval()
    preds = []
    for s in range(0, images.shape[0], batch_size):
        x = images[s:s + batch_size].permute(0, 3, 1, 2).float() / 255.0
        preds.append(predict_sets(net(x)))
    pred = {k: torch.cat([p[k] for p in preds]) for k in preds[0]}
    lab = labels_from_objects(objects)
    ok = {
        "exact_set": (pred["objects"] == lab["objects"]).all(1) & (pred["count"] == lab["count"]),
        "colour_set": (pred["colours"] == lab["colours"]).all(1),
        "shape_set": (pred["shapes"] == lab["shapes"]).all(1),
        "count": pred["count"] == lab["count"],
    }
    out: dict = {}
    for n in sorted(set(lab["count"].tolist())):
        m = lab["count"] == n
        out[f"{n}_object"] = {k: float(v[m].float().mean()) for k, v in ok.items()} | {"images": int(m.sum())}
    return out


def train(cfg: JudgeConfig, world: WorldConfig, data_root: Path, out: Path, log=print,
          init_from: Path | None = None) -> dict:
    """Train (or, with `init_from`, fine-tune a saved judge's weights) and save into `out`."""
    scenes = SceneSampling(p_one=cfg.p_one)
    t0 = time.time()
    train_set = build_dataset(data_root, cfg.train_images, cfg.seed_train, world, scenes, log=log)
    eval_set = build_dataset(data_root, cfg.eval_images, cfg.seed_eval, world, scenes, log=log)
    render_s = time.time() - t0
    torch.manual_seed(cfg.seed_init)
    net = build_judge(cfg)
    if init_from is not None:
        net.load_state_dict(load_judge(init_from).net.state_dict())
    g = torch.Generator().manual_seed(cfg.seed_init)
    bank = halo_bank(cfg.aug_halo_bank, world.tracer.size, g) if cfg.aug_halo_prob > 0 else None
    steps_per_epoch = math.ceil(cfg.train_images / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total, pct_start=0.15)
    labels = labels_from_objects(train_set["objects"])
    rows = []
    t1 = time.time()
    step = 0
    for epoch in range(cfg.epochs):
        net.train()
        perm = torch.randperm(cfg.train_images, generator=g)
        running = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            x = train_set["images"][idx].permute(0, 3, 1, 2).float() / 255.0
            x = augment(x, cfg, g, bank, world.shading.background)
            loss = judge_loss(net(x), {k: v[idx] for k, v in labels.items()})
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running += loss.item()
            if step % 50 == 0:
                rows.append({"step": step, "epoch": epoch, "loss": running / 50, "lr": sched.get_last_lr()[0],
                             "elapsed_s": round(time.time() - t1, 1)})
                running = 0.0
        acc = evaluate(net, eval_set["images"], eval_set["objects"])
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {rows[-1]['loss'] if rows else running:.4f} "
            f"exact 1obj {acc.get('1_object', {}).get('exact_set', float('nan')):.4f} "
            f"2obj {acc.get('2_object', {}).get('exact_set', float('nan')):.4f} ({time.time() - t1:.0f} s)")
    train_s = time.time() - t1
    result = evaluate(net, eval_set["images"], eval_set["objects"])
    save_judge(out, net, cfg)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "epoch", "loss", "lr", "elapsed_s"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "train_curve.csv", buf.getvalue())
    evaluation = {"held_out": result, "eval_seed": cfg.seed_eval, "eval_images": cfg.eval_images,
                  "render_s": round(render_s, 1), "train_s": round(train_s, 1), "threads": torch.get_num_threads()}
    atomic_write_json(out / "eval.json", evaluation)
    atomic_write_json(out / "recipe.json", {
        "command": "python -m " + " ".join(["generators.toyworld.train_judge"] + sys.argv[1:]),
        "init_from": None if init_from is None else str(init_from),
        "judge": asdict(cfg), "world": asdict(world), "data": f"build_dataset(n, seed) with p_one={cfg.p_one}",
    })
    return evaluation


FINETUNE_RECIPES = {"gaussian": JUDGE_GAUSSIAN_FINETUNE, "scale": JUDGE_SCALE_FINETUNE}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("generators/models/toy/judge"))
    ap.add_argument("--data-root", type=Path, default=Path(".cache/toyworld/data"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=None, help="override (tests)")
    ap.add_argument("--eval-images", type=int, default=None, help="override (tests)")
    ap.add_argument("--epochs", type=int, default=None, help="override (tests)")
    ap.add_argument("--finetune-from", type=Path, default=None,
                    help="start from this judge's weights with a fine-tuning recipe (--recipe)")
    ap.add_argument("--recipe", choices=sorted(FINETUNE_RECIPES), default="gaussian",
                    help="with --finetune-from: gaussian = JUDGE_GAUSSIAN_FINETUNE (halo + darkening, the committed "
                         "judge's); scale = JUDGE_SCALE_FINETUNE (the same plus zoom: a size-robust sensitivity judge)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = JudgeConfig()
    if args.finetune_from is not None:
        cfg = replace(cfg, **FINETUNE_RECIPES[args.recipe])
    overrides = {k: v for k, v in {"train_images": args.train_images, "eval_images": args.eval_images,
                                   "epochs": args.epochs}.items() if v is not None}
    cfg = replace(cfg, **overrides)
    evaluation = train(cfg, WorldConfig(), args.data_root, args.out, init_from=args.finetune_from)
    print({k: v["exact_set"] for k, v in evaluation["held_out"].items()})
    committed = Path(__file__).resolve().parents[1] / "models" / "toy" / "judge"
    if args.out.resolve() == committed:  # the committed judge was replaced: re-pin the toybench metric set
        from generators.models.fingerprint import repin
        from metrics.models import SETS_DIR as METRIC_SETS

        version, _ = repin(METRIC_SETS / "toybench.yaml", "judge", [committed])
        print(f"metrics/model_sets/toybench.yaml now pins this judge as version {version}: scores of the "
              f"previous judge are not taken for its own (re-score with harness eval ... --force)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
