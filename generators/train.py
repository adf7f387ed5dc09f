"""One generation run: load models -> initialise Gaussians -> optimise -> write outputs.

    status = run_generation(cfg, out_dir)

The run directory is the unit of truth (file names in `outputs.RUN_FILES`). The loop checkpoints
every `cfg.checkpoint_every` steps and resumes from `checkpoints/last.pt` when the saved config
matches. Randomness comes from a generator seeded by (seed, step) and the checkpoint holds every
state the loop carries, so what is guaranteed is:
  - on CPU with one torch thread, a run killed at any point (even SIGKILL) and resumed is
    bit-identical to one that ran straight through (tests/test_resume_after_kill.py);
  - with more threads (or on a GPU) not even two straight runs are bit-identical: multi-threaded
    reductions sum in a varying order (measured: Gaussians differ by ~1e-7 after 8 steps between two
    straight 2-thread CPU runs), so a resumed run matches a straight one to that rounding, not bit
    for bit. `torch.use_deterministic_algorithms` (~40% per step) is not switched on.
A NaN/Inf loss, parameter or guidance step stops the run with a recorded reason (deterministic:
not retried).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import yaml

from generators.cameras import sample_training_cameras
from generators.config import RunConfig, config_hash, config_to_dict
from generators.errors import CorruptFileError, UserError
from generators.gaussians import Gaussians
from generators.guidance import Guidance, source_components
from generators.io import atomic_torch_save, atomic_write_json, atomic_write_text
from generators.outputs import RUN_FILES, run_provenance, write_log, write_progress, write_views
from generators.precision import Precision, resolve_precision
from generators.render import render
from generators.schedules import schedule_value

STATUS_DONE = "done"
STATUS_FAILED = "failed"
STATUS_RUNNING = "running"
STATUS_STOPPED = "stopped"  # ended early on request or interrupted; resumable


class NonFiniteError(RuntimeError):
    pass


@dataclass
class RunState:
    """Everything a checkpoint holds."""

    step: int  # the next step to run
    gaussians: Gaussians
    optimizer: torch.optim.Optimizer
    densify: object
    log: list[dict] = field(default_factory=list)
    scaler: torch.amp.GradScaler | None = None  # fp16 loss scaling (its scale resumes too)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for one step: resuming at any step draws exactly the same numbers."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda was asked for, but no CUDA GPU is available")
    return torch.device(name)


def required_components(cfg: RunConfig) -> set[str]:
    comps = set(source_components(cfg.guidance.source.kind))
    if cfg.guidance.source.kind == "controlnet" and cfg.guidance.source.controlnet.control_map == "detector":
        comps.add("control_detector")  # normals estimated from the RGB render need the depth network
    if cfg.init.kind == "shap-e":
        comps.add("shap_e")
    return comps


# ----------------------------------------------------------------------------------------------
# initialisation


def _cache_dir() -> Path:
    return Path(os.environ.get("ANCHORDS_CACHE", Path(__file__).resolve().parents[1] / ".cache"))


def initial_gaussians(cfg: RunConfig, models, device: torch.device) -> Gaussians:
    from generators.gaussians.init import gaussians_from_points, grow_point_cloud, init_ball

    gen = step_generator(cfg.seed, -1)
    if cfg.init.kind == "ball":
        return init_ball(cfg.init, gen).to(device)
    from generators.models.shap_e import shap_e_point_cloud

    # Shap-E is sampled once per (model set, prompt, seed, settings) and cached, so every method
    # starts from the same shape (GaussianDreamer re-samples it on every launch)
    key = hashlib.sha256(json.dumps(
        [cfg.models, cfg.prompt, cfg.seed, config_to_dict(cfg.init.shap_e)], sort_keys=True).encode()).hexdigest()[:20]
    path = _cache_dir() / "shap_e" / f"{key}.pt"
    if path.is_file():
        verts, colors = torch.load(path, weights_only=True)
    else:
        verts, colors = shap_e_point_cloud(models.shap_e, cfg.prompt, cfg.init.shap_e, gen)
        atomic_torch_save(path, (verts.cpu(), colors.cpu()))
    points, point_colors = grow_point_cloud(verts.float().cpu(), colors.float().cpu(), cfg.init, gen)
    return gaussians_from_points(points, point_colors, cfg.init).to(device)


# ----------------------------------------------------------------------------------------------
# the loop


def sparsity_loss(depth, alpha) -> torch.Tensor:
    """GaussianDreamer's 'sparsity' term: mean(sqrt(o^2 + 0.01)), o = accumulated depth / (its batch
    max + 1e-5), exactly as GaussianDreamer forms it: the max is not detached, so its gradient
    also reaches the Gaussians behind the farthest pixel."""
    acc = depth * alpha
    o = acc / (acc.max() + 1e-5)
    return torch.sqrt(o ** 2 + 0.01).mean()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _check_finite(name: str, value: torch.Tensor, step: int) -> None:
    if not torch.isfinite(value).all():
        raise NonFiniteError(f"non-finite {name} at step {step}")


def _check_guidance_step(gstep, step: int) -> None:
    """The guidance step's inputs and outputs are finite. Its gradient has NaN and Inf zeroed (a
    stray value in one pixel must not end a run), so a non-finite guidance scale or noise
    prediction would otherwise train on zeros and end "done"; the step's logged scalars (the
    effective CFG scale, the noise-prediction norms) carry them: check those."""
    bad = {k: v for k, v in gstep.logs.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        raise NonFiniteError(f"non-finite guidance at step {step}: {', '.join(f'{k}={v}' for k, v in bad.items())}")


def save_checkpoint(path: Path, cfg: RunConfig, state: RunState, guidance: Guidance) -> None:
    atomic_torch_save(path, {
        "config_hash": config_hash(cfg),
        "step": state.step,
        "gaussians": state.gaussians.state(),
        "optimizer": state.optimizer.state_dict(),
        "densify": state.densify.state_dict(),
        "trainer": guidance.trainer.state_dict() if guidance.trainer is not None else None,
        "scaler": state.scaler.state_dict() if state.scaler is not None else {},
        "log": state.log,
    })


def load_checkpoint(path: Path, cfg: RunConfig, guidance: Guidance, device: torch.device) -> RunState | None:
    from generators.gaussians.densify import DensifyState
    from generators.gaussians.optimizer import build_optimizer

    if not path.is_file():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["config_hash"] != config_hash(cfg):
        return None  # a changed setting makes a new run: never resume from another config
    gaussians = Gaussians.from_state(ckpt["gaussians"]).to(device)
    optimizer = build_optimizer(gaussians, cfg.optim)
    optimizer.load_state_dict(ckpt["optimizer"])
    densify = DensifyState.zeros(len(gaussians), device)
    densify.load_state_dict(ckpt["densify"])
    if guidance.trainer is not None and ckpt.get("trainer") is not None:
        guidance.trainer.load_state_dict(ckpt["trainer"])
    scaler = resolve_precision(cfg.precision, device).grad_scaler()
    if ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    return RunState(ckpt["step"], gaussians, optimizer, densify, ckpt["log"], scaler)


def build_guidance(cfg: RunConfig, models) -> Guidance:
    """The run's guidance. Parts of it that start from random weights (VSD's LoRA and camera
    embedding) draw them from torch's global generator: seed it from the run seed, inside a fork,
    so two runs of one config start alike and the caller's random state is left untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(step_generator(cfg.seed, -1, stream=1).initial_seed())
        return Guidance(models, cfg.guidance, cfg.camera, cfg.prompt)


@dataclass
class StepForward:
    """The forward half of one optimisation step: what backward starts from."""

    loss: torch.Tensor  # scalar, the weighted sum the loop backpropagates
    loss_sparsity: torch.Tensor
    gstep: object  # GuidanceStep
    render: object  # RenderOutput (means2d and radii feed densification)
    cameras: object  # Cameras


def forward_step(cfg: RunConfig, guidance: Guidance, gaussians: Gaussians, step: int, generator: torch.Generator,
                 device: torch.device, precision: Precision, background: torch.Tensor) -> StepForward:
    """Cameras -> render -> guidance -> losses. Only the guidance (the networks) runs under the
    precision's autocast: the renderer and the losses' arithmetic stay fp32."""
    cams = sample_training_cameras(cfg.camera, generator).to(device)
    out = render(gaussians, cams, cfg.render, background)
    with precision.autocast():
        gstep = guidance(out, cams, step, generator)
    loss_sparsity = sparsity_loss(out.depth, out.alpha)
    lam_sds = schedule_value(cfg.loss.lambda_sds, step)
    lam_sp = schedule_value(cfg.loss.lambda_sparsity, step)
    loss = lam_sds * gstep.loss_sds + lam_sp * loss_sparsity
    if gstep.loss_finetune is not None:
        loss = loss + schedule_value(cfg.loss.lambda_finetune, step) * gstep.loss_finetune
    return StepForward(loss, loss_sparsity, gstep, out, cams)


def backward_step(state: RunState, guidance: Guidance, loss: torch.Tensor) -> None:
    """Zero every gradient (the Gaussians' and the trainable part's), backpropagate the loss
    (scaled under fp16), and unscale the Gaussians' gradients; the trainable part's are unscaled
    by `scaler.step` inside its own `step`."""
    state.optimizer.zero_grad(set_to_none=True)
    if guidance.trainer is not None:
        guidance.trainer.zero_grad()
    state.scaler.scale(loss).backward()
    state.scaler.unscale_(state.optimizer)


def optimizer_step(state: RunState, guidance: Guidance) -> None:
    """Step the Gaussians' optimiser and the trainable part, then let the fp16 scaler adapt its
    scale (with the scaler disabled: plain optimiser steps)."""
    state.scaler.step(state.optimizer)
    if guidance.trainer is not None:
        guidance.trainer.step(state.scaler)
    state.scaler.update()


def unscaled_means2d_grad(render_out, scaler: torch.amp.GradScaler) -> torch.Tensor | None:
    """The projected centres' gradient [C, N, 2] without the loss scale; None when there is none,
    or when a scaled fp16 backward overflowed (the scaler skips that step: so do the statistics)."""
    grad = render_out.means2d.grad
    if grad is None or not scaler.is_enabled():
        return grad
    grad = grad / scaler.get_scale()
    return grad if bool(torch.isfinite(grad).all()) else None


def train(cfg: RunConfig, models, run_dir: Path, device: torch.device,
          progress: Callable[[int, int, dict], None] | None = None,
          stop_after: int | None = None) -> RunState:
    """Optimise the Gaussians; returns the final state. `stop_after` ends early (tests, preemption)."""
    from generators.gaussians.densify import (
        DensifyState,
        accumulate_stats,
        densify_and_prune,
        should_collect_stats,
        should_densify,
    )
    from generators.gaussians.optimizer import build_optimizer, update_learning_rates

    guidance = build_guidance(cfg, models)
    precision = resolve_precision(cfg.precision, device)
    ckpt_path = run_dir / RUN_FILES["checkpoint"]
    try:
        state = load_checkpoint(ckpt_path, cfg, guidance, device)
    except UserError:
        raise
    except Exception as e:  # empty, truncated or not ours: say which file and what to do, once
        raise CorruptFileError(ckpt_path, f"cannot be loaded as a checkpoint ({type(e).__name__}: {e})",
                               "delete it: the run then starts over from step 0") from e
    if state is None:
        gaussians = initial_gaussians(cfg, models, device)
        state = RunState(0, gaussians, build_optimizer(gaussians, cfg.optim),
                         DensifyState.zeros(len(gaussians), device), scaler=precision.grad_scaler())
    g = state.gaussians
    background = torch.tensor(cfg.render.background, dtype=torch.float32, device=device)
    last = cfg.steps if stop_after is None else min(cfg.steps, stop_after)

    while state.step < last:
        step = state.step
        t0 = time.perf_counter()
        gen = step_generator(cfg.seed, step)
        update_learning_rates(state.optimizer, step, cfg.optim)
        fwd = forward_step(cfg, guidance, g, step, gen, device, precision, background)
        loss, loss_sparsity, gstep, out, cams = fwd.loss, fwd.loss_sparsity, fwd.gstep, fwd.render, fwd.cameras
        _check_guidance_step(gstep, step)
        _check_finite("loss", loss.detach(), step)

        backward_step(state, guidance, loss)
        with torch.no_grad():
            means2d_grad = unscaled_means2d_grad(out, state.scaler)
            if cfg.densify.enabled and should_collect_stats(step, cfg.densify) and means2d_grad is not None:
                accumulate_stats(state.densify, g, means2d_grad, out.radii, cams.width, cams.height)
            densified = {}
            if cfg.densify.enabled and should_densify(step, cfg.densify):
                densified = densify_and_prune(g, state.optimizer, state.densify, step, cfg.densify, generator=gen)
            optimizer_step(state, guidance)
            for name, p in g.params.items():
                _check_finite(f"Gaussian {name}", p, step)

        state.step = step + 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # so step_time_s is this step's GPU work, not queued work
        row = {
            "step": step,
            "loss": loss.item(),
            "loss_sds": gstep.loss_sds.item(),
            "loss_sparsity": loss_sparsity.item(),
            "loss_finetune": gstep.loss_finetune.item() if gstep.loss_finetune is not None else math.nan,
            "num_gaussians": len(g),
            "lr_means": state.optimizer.param_groups[0]["lr"],
            "step_time_s": time.perf_counter() - t0,
            **{k: float(v) for k, v in gstep.logs.items()},
            **{f"densify_{k}": float(v) for k, v in densified.items()},
        }
        if step % cfg.log_every == 0 or state.step == cfg.steps:
            state.log.append(row)
        if progress is not None:
            progress(state.step, cfg.steps, row)
        if state.step % cfg.checkpoint_every == 0 or state.step == last:
            save_checkpoint(ckpt_path, cfg, state, guidance)
            write_progress(run_dir, state.step, cfg.steps, state.log)  # progress.json + train log so far
    return state


def check_models_version(cfg: RunConfig, spec) -> None:
    """UserError when the config was resolved against another version of the set's weights than
    the one loaded (generators/models/fingerprint.py): its results would carry the wrong label."""
    if spec is not None and cfg.models_version != spec.version:
        raise UserError(
            f"this run's config names model set {cfg.models!r} at version {cfg.models_version or '(none)'!r}, but "
            f"{spec.file} is now at version {spec.version or '(none)'!r}: resolve the config again "
            f"(generators.methods.resolve_run_config) so the run gets the id of the weights it uses")


def run_generation(cfg: RunConfig, run_dir: str | Path, *, show_progress: bool = True,
                   stop_after: int | None = None, models=None) -> dict:
    """Run (or resume) one generation in `run_dir`; returns the status dict written to status.json.

    A non-finite loss or parameter ends the run with state "failed" and its reason; any other
    exception propagates (after a "failed" status is written) so callers see the traceback.
    """
    from generators.models.loader import load_models

    run_dir = Path(run_dir)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    t0 = time.perf_counter()
    if models is None:
        # before anything is written: missing weights (a user error) leave no half-started run behind
        models = load_models(cfg.models, required_components(cfg), device, dtype=precision.weights_dtype)
    check_models_version(cfg, getattr(models, "spec", None))
    run_dir.mkdir(parents=True, exist_ok=True)
    status: dict = {"state": STATUS_RUNNING, "method": cfg.method, "prompt": cfg.prompt, "seed": cfg.seed,
                    "models": cfg.models, "models_version": cfg.models_version, "steps": cfg.steps, "config_hash": config_hash(cfg),
                    "device": str(device), "precision": precision.name,
                    "models_resolved": getattr(models, "resolved", {}), **run_provenance()}
    atomic_write_text(run_dir / RUN_FILES["config"], yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    atomic_write_json(run_dir / RUN_FILES["status"], status)

    bar = None
    progress = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, desc=f"{cfg.method} | {cfg.prompt[:40]}", unit="step", leave=False)

        def progress(done: int, total: int, row: dict) -> None:
            bar.n = done
            bar.set_postfix(loss=f"{row['loss']:.3g}", n=row["num_gaussians"], refresh=False)
            bar.refresh()

    try:
        state = train(cfg, models, run_dir, device, progress, stop_after)
    except NonFiniteError as e:  # deterministic: the same config fails the same way, never retried
        status.update(state=STATUS_FAILED, reason=str(e), deterministic=True, wall_time_s=time.perf_counter() - t0)
        atomic_write_json(run_dir / RUN_FILES["status"], status)
        return status
    except (KeyboardInterrupt, SystemExit) as e:
        # preemption (SLURM/submitit exit), Ctrl-C: not a failure, the run resumes from its checkpoint
        status.update(state=STATUS_STOPPED, reason=f"interrupted ({type(e).__name__})",
                      wall_time_s=time.perf_counter() - t0)
        atomic_write_json(run_dir / RUN_FILES["status"], status)
        raise
    except BaseException as e:
        status.update(state=STATUS_FAILED, reason=f"{type(e).__name__}: {e}", wall_time_s=time.perf_counter() - t0)
        atomic_write_json(run_dir / RUN_FILES["status"], status)
        raise
    finally:
        if bar is not None:
            bar.close()

    from generators.gaussians.ply import save_ply

    times = [r["step_time_s"] for r in state.log]
    status.update(
        step=state.step,
        num_gaussians=len(state.gaussians),
        seconds_per_step=(sum(times) / len(times)) if times else math.nan,
        peak_memory_mb=_peak_memory_mb(device),
    )
    write_log(run_dir / RUN_FILES["log"], state.log)
    if state.step < cfg.steps:  # stopped early on request: resumable, not done
        status.update(state=STATUS_STOPPED, wall_time_s=time.perf_counter() - t0)
        atomic_write_json(run_dir / RUN_FILES["status"], status)
        return status
    save_ply(state.gaussians, run_dir / RUN_FILES["ply"])
    write_views(run_dir, state.gaussians, cfg.views, cfg.render)
    status.update(state=STATUS_DONE, wall_time_s=time.perf_counter() - t0)
    atomic_write_json(run_dir / RUN_FILES["status"], status)  # last: the run is done only now
    return status
