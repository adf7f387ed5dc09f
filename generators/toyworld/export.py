"""Export a prior training run as the `toy` model set, in the Hugging Face layout.

    python -m generators.toyworld.export --run .cache/toyworld/prior_run [--out generators/models/toy/weights]

Writes (EMA weights by default):
    unet/  text_encoder/  tokenizer/  scheduler/  image_encoder/  image_processor/
    ip_adapter/ip-adapter-plus_toy.safetensors     flat "image_proj.*" / "ip_adapter.*" keys (h94 layout)
    training/train_log.csv  training/run.json  training/export.json
    training/first_steps.json   the exact first-step losses of the recipe (when the run has them; else
                                kept from the previous export at --out if its recipe is the run's)
    training/eval_log.csv, eval_verdict.json   the tracker's judged accuracy per step and its
                                plateau verdict (generators.toyworld.track_prior), when the run has them
When --out is the committed toy set's folder, generators/models/sets/toy.yaml is re-pinned
(generators/models/fingerprint.py): a new `version`, so runs of this prior get new ids.

The folder is built beside the target and swapped in, so readers never see half an export.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from generators.errors import UserError, report_error
from generators.io import atomic_write_json, honour_umask
from generators.toyworld.config import PriorNetConfig
from generators.toyworld.prior import (ToyPrior, build_image_processor, build_scheduler, build_tokenizer, build_unet,
                                       flatten_ip_state, ip_adapter_state_dict, unet_base_state_dict,
                                       unflatten_ip_state)
from generators.toyworld.train_prior import CHECKPOINT, FIRST_STEPS, LOG

IP_WEIGHT_NAME = "ip-adapter-plus_toy.safetensors"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "models" / "toy" / "weights"


def load_run(run: Path, ema: bool = True) -> tuple[ToyPrior, dict]:
    """The trained composite of a run (EMA weights unless ema=False) and its checkpoint."""
    path = Path(run) / CHECKPOINT
    if not path.exists():
        raise UserError(f"{run} has no {CHECKPOINT}: train first (python -m generators.toyworld.train_prior)")
    ck = torch.load(path, map_location="cpu", weights_only=True)
    cfg = PriorNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["net"].items()})
    model = ToyPrior(cfg, seed=0)
    model.load_state_dict(ck["model"])
    if ema:
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(ck["ema"][n])
    return model.eval(), ck


def write_model_set(model: ToyPrior, out: Path) -> None:
    """Save every component of `model` under `out` (which must not exist yet)."""
    cfg = model.cfg
    unet = build_unet(cfg)
    unet.load_state_dict(unet_base_state_dict(model.unet))
    unet.save_pretrained(out / "unet")
    model.text_encoder.save_pretrained(out / "text_encoder")
    build_tokenizer(cfg.max_length).save_pretrained(out / "tokenizer")
    build_scheduler(cfg).save_pretrained(out / "scheduler")
    model.image_encoder.save_pretrained(out / "image_encoder")
    build_image_processor().save_pretrained(out / "image_processor")
    (out / "ip_adapter").mkdir(parents=True)
    save_file(flatten_ip_state(ip_adapter_state_dict(model.unet)), str(out / "ip_adapter" / IP_WEIGHT_NAME),
              metadata={"format": "pt"})


def load_export(folder: Path, cfg: PriorNetConfig) -> tuple[ToyPrior, dict]:
    """The composite an export holds (the weights it was written with, EMA by default) and its
    export.json: the inverse of `write_model_set`, for continuing a training whose checkpoint is
    lost. Refuses an export whose recorded network config is not `cfg`."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    folder = Path(folder)
    training = folder / "training"
    if not (training / "export.json").is_file() or not (folder / "ip_adapter" / IP_WEIGHT_NAME).is_file():
        raise UserError(f"{folder}: not a ToyWorld export (needs training/export.json and ip_adapter/{IP_WEIGHT_NAME})")
    info = json.loads((training / "export.json").read_text(encoding="utf-8"))
    recorded = info.get("net")  # exports before this record: the training run's run.json
    if recorded is None and (training / "run.json").is_file():
        recorded = json.loads((training / "run.json").read_text(encoding="utf-8")).get("net")
    if recorded != json.loads(json.dumps(asdict(cfg))):
        raise UserError(f"{folder}: its network config differs from the current recipe (or is not recorded)")
    model = ToyPrior(cfg, seed=0)
    model.text_encoder.load_state_dict(type(model.text_encoder).from_pretrained(folder / "text_encoder").state_dict())
    model.image_encoder.load_state_dict(type(model.image_encoder).from_pretrained(folder / "image_encoder").state_dict())
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    state = unflatten_ip_state(load_file(str(folder / "ip_adapter" / IP_WEIGHT_NAME)))
    unet._load_ip_adapter_weights([state], low_cpu_mem_usage=False)  # diffusers' own conversion
    model.unet.load_state_dict(unet.state_dict())  # strict: the same modules as the composite's
    return model.eval(), info


RECIPE_KEYS = ("net", "train", "world", "pool_key")


def same_recipe(run_json_a: Path, run_json_b: Path) -> bool:
    """Whether two run.json files name the same recipe and data (commands and thread counts aside)."""
    if not (run_json_a.is_file() and run_json_b.is_file()):
        return False
    a, b = json.loads(run_json_a.read_text()), json.loads(run_json_b.read_text())
    return all(k in a and a.get(k) == b.get(k) for k in RECIPE_KEYS)


def export(run: Path, out: Path = DEFAULT_OUT, ema: bool = True) -> Path:
    model, ck = load_run(run, ema)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    honour_umask(tmp)  # the folder readable as a plain mkdir makes it, not 0700
    try:
        write_model_set(model, tmp / "set")
        training = tmp / "set" / "training"
        training.mkdir()
        # the tracker's evaluations and verdict (track_prior) are why this step was exported
        for name in (LOG, "run.json", FIRST_STEPS, "eval_log.csv", "eval_verdict.json"):
            if (Path(run) / name).exists():
                shutil.copy2(Path(run) / name, training / name)
        # a run resumed from a checkpoint older than the first-steps record has none; the record
        # depends on the recipe alone, so the previous export's stays when the recipe is the same
        old_first = out / "training" / FIRST_STEPS
        if not (training / FIRST_STEPS).exists() and old_first.is_file() \
                and same_recipe(out / "training" / "run.json", training / "run.json"):
            shutil.copy2(old_first, training / FIRST_STEPS)
        atomic_write_json(training / "export.json", {"step": ck["step"], "ema": ema, "train_elapsed_s": ck["elapsed_s"],
                                                     "pool_key": ck.get("pool_key", ""),
                                                     "net": ck["net"],
                                                     "command": "python -m generators.toyworld.export " + " ".join(sys.argv[1:])})
        old = None
        if out.exists():
            old = tmp / "old"
            os.replace(out, old)
        os.replace(tmp / "set", out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-ema", action="store_true", help="export the raw weights instead of the EMA")
    args = ap.parse_args(argv)
    try:
        path = export(args.run, args.out, ema=not args.no_ema)
    except UserError as e:
        return report_error(e)
    print(f"exported {args.run} -> {path}")
    if Path(path).resolve() == DEFAULT_OUT.resolve():  # the committed prior was replaced: re-pin its set
        from generators.models.fingerprint import repin
        from generators.models.spec import SETS_DIR

        step = json.loads((Path(path) / "training" / "export.json").read_text())["step"]
        version, _ = repin(SETS_DIR / "toy.yaml", f"prior-step-{step}", [Path(path)])
        print(f"generators/models/sets/toy.yaml now pins these weights as version {version}: runs of this prior "
              f"get new ids; results of the previous one stay as they are")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
