"""Train the ToyWorld prior (text + image conditioned, IP-Adapter-Plus style) on CPU, resumably.

    python -m generators.toyworld.train_prior --out .cache/toyworld/prior_run --resume --threads 1

The run folder holds:
    checkpoint.pt    model, EMA, optimiser, step and the data generator's state (atomic)
    train_log.csv    step, loss (mean over the last `log_every` steps), lr, elapsed_s, images_per_s
    run.json         command, every recipe value, the data set's cache key
    first_steps.json the exact loss of each of the first FIRST_STEPS_N steps (not means), the thread
                     count and data key: written by a run that started from scratch, so retraining a
                     few steps from the recipe can be checked against it (export copies it)

Every random draw comes from one seeded generator whose state is checkpointed, so a run that
is stopped and resumed reaches the same weights as one that never stopped (same thread count).
SIGTERM / SIGINT save a checkpoint before exiting. Export the EMA weights with
`python -m generators.toyworld.export --run <out>`.

A run whose checkpoint is lost continues from its export instead (`--warm-start
generators/models/toy/weights`): the exported EMA weights become both the weights and the EMA, the
step and elapsed time are the export's, and the optimiser starts fresh, so the learning rate warms
up again over `lr_warmup_steps` (fresh Adam moments make full-size first steps). The data order
after that differs from the lost run's, so it is not bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import signal
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.errors import UserError, report_error
from generators.io import atomic_torch_save, atomic_write_json, atomic_write_text
from generators.toyworld.config import PriorNetConfig, PriorTrainConfig, WorldConfig
from generators.toyworld.data import captions_of, dataset_key, load_chunk
from generators.toyworld.judge import gaussian_blur, random_shift
from generators.toyworld.prior import ToyPrior, build_scheduler, build_tokenizer, normalise_for_clip, to_latents

CHECKPOINT = "checkpoint.pt"
LOG = "train_log.csv"
LOG_FIELDS = ["step", "loss", "lr", "elapsed_s", "images_per_s"]
FIRST_STEPS = "first_steps.json"
FIRST_STEPS_N = 3  # how many first steps' exact losses a run from scratch records


def lr_factor(step: int, cfg: PriorTrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr_final_frac at total_steps (flat after)."""
    if step < cfg.lr_warmup_steps:
        return (step + 1) / cfg.lr_warmup_steps
    span = max(1, cfg.total_steps - cfg.lr_warmup_steps)
    progress = min(1.0, (step - cfg.lr_warmup_steps) / span)
    return cfg.lr_final_frac + (1.0 - cfg.lr_final_frac) * 0.5 * (1.0 + math.cos(math.pi * progress))


def tokenize_all(captions: list[str], tokenizer, max_length: int) -> Tensor:
    """[N, max_length] token ids, tokenising each distinct caption once."""
    unique = sorted(set(captions))
    ids = tokenizer(unique, padding="max_length", max_length=max_length, truncation=True,
                    return_tensors="pt").input_ids
    row = {c: i for i, c in enumerate(unique)}
    return ids[torch.tensor([row[c] for c in captions])]


def condition_images(x: Tensor, cfg: PriorTrainConfig, g: torch.Generator) -> Tensor:
    """The image condition: the clean target [B, 3, H, W] lightly shifted, blurred and noised."""
    b = x.shape[0]
    cond = random_shift(x, cfg.cond_shift_px, g)
    blur = torch.rand(b, generator=g) < cfg.cond_blur_prob
    sigma = 0.3 + (cfg.cond_blur_sigma_max - 0.3) * torch.rand(b, generator=g)
    cond = torch.where(blur[:, None, None, None], gaussian_blur(cond, sigma), cond)
    cond = cond + cfg.cond_noise_std * torch.randn(cond.shape, generator=g)
    return cond.clamp(0.0, 1.0)


class ChunkedPool:
    """Training images that grow by one cached chunk every `every` steps.

    How many chunks step s may draw from is a function of s alone, so a resumed run sees exactly
    the data an uninterrupted one saw, and training starts before the whole pool is rendered.
    """

    def __init__(self, load: Callable[[int], dict], n_chunks: int, initial: int = 1, every: int = 0):
        self.load, self.n_chunks, self.initial, self.every = load, n_chunks, initial, every

    def chunks_at(self, step: int) -> int:
        if self.every <= 0:
            return self.n_chunks
        return min(self.n_chunks, self.initial + step // self.every)

    @classmethod
    def fixed(cls, pool: dict[str, Tensor]) -> "ChunkedPool":
        return cls(lambda i: pool, 1)


class PriorTrainer:
    """One training run in `out`. `pool`: a ChunkedPool, or one fixed dict
    {"images" [N, 32, 32, 3] uint8, "objects" [N, 3], "relation" [N]}."""

    def __init__(self, out: Path, pool: ChunkedPool | dict[str, Tensor], net: PriorNetConfig,
                 train: PriorTrainConfig, pool_key: str = "", log=print, command: str = ""):
        self.out, self.net_cfg, self.cfg, self.log = Path(out), net, train, log
        self.command = command  # recorded in first_steps.json
        self.pool = pool if isinstance(pool, ChunkedPool) else ChunkedPool.fixed(pool)
        self.tokenizer = build_tokenizer(net.max_length)
        self.images = torch.zeros(0, 32, 32, 3, dtype=torch.uint8)
        self.ids = torch.zeros(0, net.max_length, dtype=torch.long)
        self.loaded = 0
        self.empty_ids = tokenize_all([""], self.tokenizer, net.max_length)[0]
        self.model = ToyPrior(net, seed=train.seed)
        self.alphas_cumprod = build_scheduler(net).alphas_cumprod.float()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.ema = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.gen = torch.Generator().manual_seed(train.seed)
        self.step = 0
        self.pool_key = pool_key
        self.rows: list[dict] = []
        self.elapsed = 0.0
        # exact losses of steps 1..FIRST_STEPS_N and the thread count they ran at; None when
        # unknown (a run resumed from a checkpoint that predates this record)
        self.first_losses: list[float] | None = []
        self.first_threads: int | None = None
        self._first_saved = -1
        self.rewarm_from: int | None = None  # the step a warm start continued from (LR warms up again)

    def warm_start(self, model: ToyPrior, step: int, elapsed_s: float = 0.0) -> None:
        """Continue from `model`'s weights (an export's EMA) at `step` with a fresh optimiser."""
        self.model.load_state_dict(model.state_dict())
        self.ema = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.step, self.elapsed, self.rewarm_from = step, elapsed_s, step
        self.gen = torch.Generator().manual_seed(self.cfg.seed + step)  # the lost run's data state is unknown
        self.first_losses = None  # the first steps are the export's, not recorded here

    def lr_now(self) -> float:
        factor = lr_factor(self.step, self.cfg)
        if self.rewarm_from is not None:
            factor *= min(1.0, (self.step - self.rewarm_from + 1) / self.cfg.lr_warmup_steps)
        return self.cfg.lr * factor

    # -- one step ---------------------------------------------------------------------------
    def grow_pool(self) -> None:
        while self.loaded < self.pool.chunks_at(self.step):
            part = self.pool.load(self.loaded)
            self.images = torch.cat([self.images, part["images"]])
            self.ids = torch.cat([self.ids, tokenize_all(captions_of(part), self.tokenizer, self.net_cfg.max_length)])
            self.loaded += 1

    def batch(self) -> dict[str, Tensor]:
        self.grow_pool()
        c, g = self.cfg, self.gen
        b = c.batch_size
        idx = torch.randint(self.images.shape[0], (b,), generator=g)
        x = self.images[idx].permute(0, 3, 1, 2).float() / 255.0  # [B, 3, 32, 32]
        if c.hflip:
            flip = torch.rand(b, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        ids = self.ids[idx].clone()
        u = torch.rand(b, generator=g)
        # u in [0, both) drops both, [both, both + text) text only, next image-only band
        both, text_only, image_only = c.p_drop_both, c.p_drop_text_only, c.p_drop_image_only
        drop_text = u < both + text_only
        drop_image = (u < both) | ((u >= both + text_only) & (u < both + text_only + image_only))
        ids[drop_text] = self.empty_ids
        pixels = normalise_for_clip(condition_images(x, c, g))
        zero_tokens = drop_image & (torch.rand(b, generator=g) < c.p_zero_tokens_when_dropped)
        pixels[drop_image & ~zero_tokens] = 0.0  # diffusers' "no image": zeros after normalisation
        t = torch.randint(0, self.net_cfg.num_train_timesteps, (b,), generator=g)
        z = to_latents(x, self.net_cfg.factor)
        noise = torch.randn(z.shape, generator=g)
        ab = self.alphas_cumprod[t][:, None, None, None]
        noisy = ab.sqrt() * z + (1.0 - ab).sqrt() * noise
        return {"noisy": noisy, "t": t, "ids": ids, "pixels": pixels, "keep": (~zero_tokens).float(), "noise": noise}

    def train_step(self) -> float:
        for group in self.opt.param_groups:
            group["lr"] = self.lr_now()
        b = self.batch()
        pred = self.model(b["noisy"], b["t"], b["ids"], b["pixels"], token_keep=b["keep"])
        # epsilon MSE; unshuffling only permutes pixels, so this is the pixel-space loss
        loss = F.mse_loss(pred, b["noise"])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.step += 1
        decay = min(self.cfg.ema_decay, (1.0 + self.step) / (10.0 + self.step))
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                self.ema[n].lerp_(p.detach(), 1.0 - decay)
        value = loss.item()
        self.record_first_step(value)
        return value

    def record_first_step(self, loss: float) -> None:
        """Keep the exact loss of step self.step while the run is within its first steps. The
        record stops at a gap (unknown earlier steps) or a thread-count change (not reproducible)."""
        rec = self.first_losses
        if rec is None or self.step > FIRST_STEPS_N or len(rec) != self.step - 1:
            return
        threads = torch.get_num_threads()
        if self.first_threads is None:
            self.first_threads = threads
        if threads == self.first_threads:
            rec.append(loss)

    def first_steps_record(self) -> dict:
        n = len(self.first_losses or [])
        return {"steps": list(range(1, n + 1)), "losses": list(self.first_losses or []),
                "threads": self.first_threads, "pool_key": self.pool_key, "seed": self.cfg.seed,
                "command": self.command,
                "note": "exact loss of each first step of a run from scratch (train_log.csv holds means); "
                        "deterministic for a fixed thread count"}

    # -- checkpoints ------------------------------------------------------------------------
    def state(self) -> dict:
        return {"model": self.model.state_dict(), "ema": self.ema, "opt": self.opt.state_dict(), "step": self.step,
                "generator": self.gen.get_state(), "elapsed_s": self.elapsed, "pool_key": self.pool_key,
                "net": asdict(self.net_cfg), "train": asdict(self.cfg),
                "first_losses": self.first_losses, "first_threads": self.first_threads, "rewarm_from": self.rewarm_from}

    def save(self) -> None:
        atomic_torch_save(self.out / CHECKPOINT, self.state())
        old = read_log(self.out / LOG)
        rows = [r for r in old if int(r["step"]) <= (self.rows[0]["step"] - 1 if self.rows else self.step)] + self.rows
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(self.out / LOG, buf.getvalue())
        self.rows = []
        if self.first_losses and len(self.first_losses) != self._first_saved:
            atomic_write_json(self.out / FIRST_STEPS, self.first_steps_record())
            self._first_saved = len(self.first_losses)

    def load(self) -> None:
        ck = torch.load(self.out / CHECKPOINT, map_location="cpu", weights_only=True)
        if self.pool_key and ck.get("pool_key") and ck["pool_key"] != self.pool_key:
            raise UserError(f"{self.out}: checkpoint was trained on data set {ck['pool_key']}, not {self.pool_key}")
        if ck["net"] != asdict(self.net_cfg):
            raise UserError(f"{self.out}: checkpoint network config differs from the current recipe")
        self.model.load_state_dict(ck["model"])
        self.ema = ck["ema"]
        self.opt.load_state_dict(ck["opt"])
        self.step = ck["step"]
        self.gen.set_state(ck["generator"])
        self.elapsed = ck["elapsed_s"]
        # checkpoints written before the first-steps record hold neither key: record unknown
        self.first_losses = ck.get("first_losses")
        self.first_threads = ck.get("first_threads")
        self._first_saved = -1
        self.rewarm_from = ck.get("rewarm_from")

    # -- loop -------------------------------------------------------------------------------
    def run(self, until_step: int, checkpoint_every_s: float | None = None) -> list[float]:
        """Train until `until_step`, checkpointing every few minutes and at the end. Returns the losses."""
        every = self.cfg.checkpoint_every_s if checkpoint_every_s is None else checkpoint_every_s
        losses: list[float] = []
        stop = {"flag": False}

        def request_stop(signum, frame):  # finish the step, save, exit
            stop["flag"] = True

        handlers = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                handlers[sig] = signal.signal(sig, request_stop)
            except ValueError:  # not the main thread (tests): no handlers
                pass
        self.model.train()
        last_save = time.time()
        window: list[float] = []
        t_window = time.time()
        try:
            while self.step < until_step and not stop["flag"]:
                t0 = time.time()
                loss = self.train_step()
                self.elapsed += time.time() - t0
                losses.append(loss)
                window.append(loss)
                if self.step % self.cfg.log_every == 0 or self.step == until_step:
                    dt = max(time.time() - t_window, 1e-9)
                    row = {"step": self.step, "loss": sum(window) / len(window),
                           "lr": self.opt.param_groups[0]["lr"], "elapsed_s": round(self.elapsed, 2),
                           "images_per_s": round(len(window) * self.cfg.batch_size / dt, 1)}
                    self.rows.append(row)
                    self.log(f"step {row['step']} loss {row['loss']:.4f} lr {row['lr']:.2e} "
                             f"{row['images_per_s']} img/s")
                    window, t_window = [], time.time()
                if time.time() - last_save >= every:
                    self.save()
                    last_save = time.time()
        finally:
            self.save()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        return losses


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) if k != "step" else int(v) for k, v in r.items()} for r in csv.DictReader(f)]


def make_pool(data_root: Path, cfg: PriorTrainConfig, world: WorldConfig, log=print) -> tuple[ChunkedPool, str]:
    """The recipe's growing pool of cached chunks, and a key naming its data."""
    scenes = world.scenes
    n_chunks = math.ceil(cfg.pool_images / cfg.pool_chunk)

    def load(i: int) -> dict:
        return load_chunk(data_root, i, cfg.pool_seed, world, scenes, cfg.pool_chunk, log=log)

    key = f"{dataset_key(cfg.pool_seed, cfg.pool_chunk, world, scenes)}-n{n_chunks * cfg.pool_chunk}"
    return ChunkedPool(load, n_chunks, cfg.pool_initial_chunks, cfg.pool_grow_every_steps), key


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".cache/toyworld/prior_run"))
    ap.add_argument("--steps", type=int, default=None, help="train until this step (default: the recipe's total_steps)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt when it exists")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", type=Path, default=Path(".cache/toyworld/data"))
    ap.add_argument("--pool-images", type=int, default=None, help="override (tests, smoke runs)")
    ap.add_argument("--batch-size", type=int, default=None, help="override (tests, smoke runs)")
    ap.add_argument("--checkpoint-every-s", type=float, default=None)
    ap.add_argument("--warm-start", type=Path, default=None, metavar="EXPORT",
                    help="start a new run from an exported model set (e.g. generators/models/toy/weights) at its "
                         "step, with a fresh optimiser: for a run whose checkpoint is lost")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    log = lambda m: print(m, flush=True)  # noqa: E731
    train_cfg = PriorTrainConfig()
    over = {k: v for k, v in {"pool_images": args.pool_images, "batch_size": args.batch_size,
                              "checkpoint_every_s": args.checkpoint_every_s}.items() if v is not None}
    train_cfg = replace(train_cfg, **over)
    world = WorldConfig()
    try:
        if (args.out / CHECKPOINT).exists() and not args.resume:
            raise UserError(f"{args.out} already holds a checkpoint: pass --resume to continue it, or pick another --out")
        pool, key = make_pool(args.data_root, train_cfg, world, log)
        command = "python -m " + " ".join(["generators.toyworld.train_prior"] + sys.argv[1:])
        trainer = PriorTrainer(args.out, pool, PriorNetConfig(), train_cfg, pool_key=key, log=log, command=command)
        warm = None
        if args.resume and (args.out / CHECKPOINT).exists():
            trainer.load()
            log(f"resumed {args.out} at step {trainer.step}")
            warm = _read_json(args.out / "run.json").get("warm_start")  # keep the record across resumes
        elif args.warm_start is not None:
            from generators.toyworld.export import load_export  # export imports this module

            model, info = load_export(args.warm_start, PriorNetConfig())
            trainer.warm_start(model, info["step"], info.get("train_elapsed_s", 0.0))
            old_log = Path(args.warm_start) / "training" / LOG  # the curve so far, continued by this run
            if old_log.is_file():
                args.out.mkdir(parents=True, exist_ok=True)
                atomic_write_text(args.out / LOG, old_log.read_text(encoding="utf-8"))
            warm = {"export": str(args.warm_start), "step": info["step"], "optimiser": "fresh",
                    "lr_rewarm_steps": train_cfg.lr_warmup_steps}
            log(f"warm start from {args.warm_start} at step {trainer.step} (fresh optimiser)")
        atomic_write_json(args.out / "run.json", {
            "command": command, "warm_start": warm,
            "threads": args.threads, "pool_key": key, "net": asdict(PriorNetConfig()), "train": asdict(train_cfg),
            "world": asdict(world),
        })
        until = args.steps if args.steps is not None else train_cfg.total_steps
        trainer.run(until)
        log(f"stopped at step {trainer.step}")
    except UserError as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
