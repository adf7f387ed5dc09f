"""Score one finished run: normalise its Gaussians, render each protocol's views, run the metrics.

    cfg = EvalConfig(models="tiny")
    models = load_metric_models(cfg.models, T3BENCH_STAGES, "cpu")
    record = evaluate_run(run_dir, cfg, models)          # the set's stages; writes run_dir/metrics.json

    (ToyBench: EvalConfig(models="toybench") and stages ("toybench",), for runs on the `toy` set.)

metrics.json (written atomically after every stage, so an interrupted evaluation resumes):

    {"format": 1,
     "run": {prompt, method, seed, models (generation set)},
     "normalization": {center, scale},                  # metrics.normalize
     "quality":   {status: "done", score, best_point, view_scores [V][F], point_scores, ...,
                   model: {set, id, revision, ...}, model_set, settings, render, device,
                   timing: {render_s, score_s}, wall_s, finished_at},
     "alignment": {status: "done", <what metrics.alignment.score_alignment returned: score
                   (None when the judge gave no usable rating), rating, captions, replies, judge,
                   captioner, ...>, ...}
                  or {status: "not-available" | "failed", reason}   # never a made-up number
     "clip":      {status: "done", score, view_scores [8], model: {model, pretrained, ...}, ...},
     "toybench":  {status: "done", score (= alignment), alignment, colour_set, shape_set, count,
                   consistency, janus, modal_set, modal_is_caption, view_sets, quality,
                   reference: {the same numbers for the ground-truth scene}, ...}}
                  (runs on the `toy` model set, metric set `toybench`: metrics/toybench.py)

A stage whose status is "done" and whose model set and settings match is skipped (nothing is
recomputed); a "done" stage computed with other settings is an error unless `force=True`, so a
tiny-model score can never silently replace a real one. A stage recorded as "not-available" is
tried again on the next call.

Alignment: the 12 views of `cfg.alignment_views` are rendered here and captioned by
metrics.alignment.caption_views (kept in alignment_captions.json, keyed by captioner, settings and
views), then judged by metrics.alignment.judge_captions. A judge endpoint that never answers
(JudgeUnavailableError) records the stage as "failed" with the reason, to be retried from the
kept captions; a missing rating is recorded as such.

Source (EvalConfig.source): "gaussians" renders the run's Gaussians (metrics.json); "mesh" exports
the run's mesh (generators.mesh, kept as mesh.ply), normalises it as T3Bench does and renders it
with T3Bench's mesh renderer (metrics.mesh_render), into metrics_mesh.json. `evaluate_mesh_file`
scores any mesh file the same way.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import yaml

from generators.config import config_to_dict
from generators.errors import UserError
from generators.io import atomic_write_json
from generators.outputs import RUN_FILES
from generators.untrusted import safe_load
from metrics.cameras import alignment_cameras, clip_cameras, render_views
from metrics.config import STAGES, T3BENCH_STAGES, EvalConfig
from metrics.normalize import normalize_gaussians

METRICS_FILE = "metrics.json"
# per source (EvalConfig.source): the scores and the kept captions of each way of looking at a run
METRICS_FILES = {"gaussians": METRICS_FILE, "mesh": "metrics_mesh.json"}
CAPTIONS_FILES = {"gaussians": "alignment_captions.json", "mesh": "alignment_captions_mesh.json"}


def metrics_file(cfg_or_source) -> str:
    """The metrics file name of an EvalConfig's source (or of a source name)."""
    return METRICS_FILES[getattr(cfg_or_source, "source", cfg_or_source)]


def captions_file(cfg: EvalConfig) -> str:
    return CAPTIONS_FILES[cfg.source]
FORMAT_VERSION = 1
STATE_DONE = "done"
STATE_NOT_AVAILABLE = "not-available"
STATE_FAILED = "failed"
# settings that change speed or memory, never a number: ignored when comparing settings
NON_RESULT_KEYS = ("render_batch", "score_batch", "display_size")  # how, not what, is computed or drawn


class RunNotReady(UserError):
    """The run directory is not a finished run (no status 'done' or no gaussians.ply)."""


# ----------------------------------------------------------------------------------------------
# Reading a run and its metrics


def read_run(run_dir: Path) -> dict:
    """status.json of a finished run (with its prompt); RunNotReady otherwise."""
    status_path = run_dir / RUN_FILES["status"]
    try:
        status = json.loads(status_path.read_text())
    except FileNotFoundError:
        raise RunNotReady(f"{run_dir}: no {RUN_FILES['status']} (not a run directory, or never started)") from None
    except ValueError as e:
        raise RunNotReady(f"{status_path}: unreadable ({e})") from None
    if status.get("state") != "done":
        raise RunNotReady(f"{run_dir}: run is not finished (state {status.get('state')!r}"
                          f"{': ' + str(status['reason']) if status.get('reason') else ''})")
    if not (run_dir / RUN_FILES["ply"]).is_file():
        raise RunNotReady(f"{run_dir}: status says done but {RUN_FILES['ply']} is missing")
    if not status.get("prompt"):
        try:
            status["prompt"] = (safe_load((run_dir / RUN_FILES["config"]).read_text()) or {}).get("prompt", "")
        except (OSError, yaml.YAMLError):
            pass
    if not status.get("prompt"):
        raise RunNotReady(f"{run_dir}: neither status.json nor config.yaml names the prompt")
    return status


def read_metrics(run_dir: Path, name: str = METRICS_FILE) -> dict:
    path = Path(run_dir) / name
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: unreadable ({e}); delete it to re-evaluate the run") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a JSON object; delete it to re-evaluate the run")
    return data


def stage_settings(cfg: EvalConfig, stage: str) -> dict:
    """The settings a stage's numbers depend on (compared before a stage is skipped)."""
    settings = config_to_dict(getattr(cfg, stage))
    if stage == "alignment":
        settings = {"views": config_to_dict(cfg.alignment_views), **settings}
        settings["views"] = {k: v for k, v in settings["views"].items() if k not in NON_RESULT_KEYS}
    if cfg.source == "mesh":  # the mesh's making is part of what a mesh-path number depends on
        from generators.mesh.export import export_settings

        settings = {**settings, "source": "mesh", "mesh": export_settings(cfg.mesh)}
    return {k: v for k, v in settings.items() if k not in NON_RESULT_KEYS}


def pending_stages(run_dir: Path, cfg: EvalConfig, set_name: str, stages: Iterable[str] = T3BENCH_STAGES,
                   force: bool = False) -> list[str]:
    """The stages of `stages` that still need computing for this run (UserError on a mismatch)."""
    existing = read_metrics(run_dir, metrics_file(cfg))
    todo = []
    for stage in stages:
        record = existing.get(stage)
        if force or not isinstance(record, dict) or record.get("status") != STATE_DONE:
            todo.append(stage)
            continue
        if record.get("model_set") != set_name or record.get("settings") != stage_settings(cfg, stage):
            raise UserError(
                f"{run_dir / metrics_file(cfg)}: stage '{stage}' was scored with model set "
                f"{record.get('model_set')!r} and other settings than now ({set_name!r}); "
                f"re-score it explicitly with --force (python -m metrics eval --force ...)"
            )
    return todo


# ----------------------------------------------------------------------------------------------
# Stages


def _stage_quality(gaussians, prompt: str, cfg: EvalConfig, models, run_dir: Path) -> dict:
    from metrics.quality import evaluate_quality

    result = evaluate_quality(gaussians, prompt, cfg.quality, cfg.render, models.image_reward)
    result["model"] = dict(models.image_reward.info)
    return result


def _stage_clip(gaussians, prompt: str, cfg: EvalConfig, models, run_dir: Path) -> dict:
    t = time.perf_counter()
    images = render_views(gaussians, clip_cameras(cfg.clip), cfg.render, cfg.clip.background, cfg.clip.render_batch)
    render_s = time.perf_counter() - t
    t = time.perf_counter()
    cosines = models.clip.score(prompt, images)  # [V]
    return {
        "score": float(cosines.mean()),
        "view_scores": cosines.tolist(),
        "num_views": len(images),
        "model": dict(models.clip.info),
        "timing": {"render_s": render_s, "score_s": time.perf_counter() - t},
    }


def _cached_captions(path: Path, key: dict) -> Optional[dict]:
    """The captions kept for this run when they were made by the same captioner, settings and views."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key") == key and isinstance(data.get("captions"), list) else None


def _stage_alignment(gaussians, prompt: str, cfg: EvalConfig, models, run_dir: Path) -> dict:
    """Render, caption (kept in the source's CAPTIONS_FILES), then judge: a judge failure never costs a new captioning."""
    reason = getattr(models, "unavailable", {}).get("alignment")
    if reason is not None:
        return {"status": STATE_NOT_AVAILABLE, "reason": reason}
    from metrics.alignment import caption_views, judge_captions
    from metrics.judges import JudgeUnavailableError

    if models.alignment is None:
        raise UserError("alignment models are not loaded: load_metric_models(..., stages including 'alignment')")
    views = cfg.alignment_views
    key = {"captioner": models.alignment.captioner.describe(cfg.alignment.captioner),
           "views": stage_settings(cfg, "alignment")["views"], "source": cfg.source}
    cache = run_dir / captions_file(cfg)
    timing = {"render_s": 0.0, "caption_s": 0.0}
    captioned = _cached_captions(cache, key)
    if captioned is None:
        t = time.perf_counter()
        images = render_views(gaussians, alignment_cameras(views), cfg.render, views.background, views.render_batch)
        timing["render_s"] = time.perf_counter() - t
        t = time.perf_counter()
        captioned = {"key": key, **caption_views(images, cfg.alignment, models.alignment)}
        timing["caption_s"] = time.perf_counter() - t
        atomic_write_json(cache, captioned)
    t = time.perf_counter()
    try:
        result = dict(judge_captions(captioned, prompt, cfg.alignment, models.alignment))
    except JudgeUnavailableError as e:  # endpoint down: no number, tried again on the next call (captions kept)
        return {"status": STATE_FAILED, "reason": f"judge unavailable: {e}", "captions_file": cache.name,
                "timing": {**timing, "judge_s": time.perf_counter() - t}}
    timing["judge_s"] = time.perf_counter() - t
    result["timing"] = timing
    result["captions_file"] = cache.name
    result["resolved"] = {k: v for k, v in models.resolved.items() if k in ("captioner", "judge")}
    return result


def _stage_toybench(gaussians, prompt: str, cfg: EvalConfig, models, run_dir: Path) -> dict:
    from metrics.toybench import evaluate_toybench

    if models.toybench is None:
        raise UserError("toybench models are not loaded: load_metric_models(..., stages including 'toybench')")
    return evaluate_toybench(gaussians, prompt, cfg.toybench, cfg.render, models.toybench,
                             images_out=run_dir / TOYBENCH_VIEWS, display_out=run_dir / TOYBENCH_VIEWS_LARGE)


_STAGE_FUNCS: dict[str, Callable] = {"quality": _stage_quality, "alignment": _stage_alignment, "clip": _stage_clip,
                                     "toybench": _stage_toybench}
# ToyBench looks at the run in the world's own frame: the ToyWorld prior and judge know objects at
# world scale. The T3Bench stages look at it normalised into T3Bench's frame (metrics.normalize).
WORLD_FRAME_STAGES = ("toybench",)
TOYBENCH_VIEWS = "toybench_views.png"  # the judged views, one row per elevation
TOYBENCH_VIEWS_LARGE = "toybench_views_large.png"  # the same cameras at ToyBenchConfig.display_size, for people


# ----------------------------------------------------------------------------------------------


def evaluate_run(run_dir, cfg: EvalConfig, models, stages: Optional[Iterable[str]] = None, force: bool = False,
                 log: Optional[Callable[[str], None]] = None) -> dict:
    """Score the finished run in `run_dir` for `stages`; write and return its metrics.json record.

    Resumable: stages already done with the same model set and settings are skipped, and the
    file is rewritten (atomically) after every stage. A file lock keeps two workers off one run.
    """
    from filelock import FileLock, Timeout

    from generators.gaussians.ply import load_ply

    run_dir = Path(run_dir)
    stages = tuple(stages) if stages is not None else models.spec.stages
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise UserError(f"unknown evaluation stage(s) {', '.join(unknown)} (valid: {', '.join(STAGES)})")
    status = read_run(run_dir)
    out_file = metrics_file(cfg)
    if cfg.source == "mesh" and any(s in WORLD_FRAME_STAGES for s in stages):
        raise UserError("the toybench stage scores Gaussians in the world frame; the mesh source is for T3Bench stages")
    lock = FileLock(str(run_dir / f".{METRICS_FILE}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise UserError(f"{run_dir}: another process is evaluating this run") from None
    try:
        todo = pending_stages(run_dir, cfg, models.set_name, stages, force)
        record = read_metrics(run_dir, out_file)
        if not todo:
            return record
        t_load = time.perf_counter()
        raw = load_ply(run_dir / RUN_FILES["ply"]).to(models.device)
        if cfg.source == "mesh":  # export (or reuse) the run's mesh, normalise it as T3Bench does
            from generators.mesh.export import run_mesh
            from metrics.normalize import normalize_mesh

            mesh, mesh_record = run_mesh(run_dir, cfg.mesh, raw)
            normalized, frame = normalize_mesh(mesh)
            record["mesh"] = mesh_record
        else:
            normalized, frame = (normalize_gaussians(raw) if any(s not in WORLD_FRAME_STAGES for s in todo)
                                 else (None, record.get("normalization")))
        load_s = time.perf_counter() - t_load
        record.update(
            format=FORMAT_VERSION,
            source=cfg.source,
            run={k: status.get(k) for k in ("prompt", "method", "seed", "models", "config_hash")},
            normalization=frame,
            load_s=load_s,  # reading and normalising the Gaussians (and making the mesh), shared by the stages
        )
        for stage in todo:
            if log is not None:
                log(f"{run_dir}: {stage} ...")
            t0 = time.perf_counter()
            scene = raw if stage in WORLD_FRAME_STAGES else normalized
            result = _STAGE_FUNCS[stage](scene, status["prompt"], cfg, models, run_dir)
            entry = {"status": STATE_DONE, **result}
            entry.update(
                model_set=models.set_name,
                settings=stage_settings(cfg, stage),
                render=config_to_dict(cfg.render),
                device=str(models.device),
                timing=dict(entry.get("timing", {})),  # parts (render_s, score_s): they sum to ~wall_s
                wall_s=time.perf_counter() - t0,
                finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
            record[stage] = entry
            atomic_write_json(run_dir / out_file, record)
            if log is not None:
                shown = entry.get("score")
                log(f"{run_dir}: {stage} {entry['status']}"
                    f"{f' score {shown:.4g}' if isinstance(shown, (int, float)) else ''}"
                    f"{' (' + str(entry['reason']) + ')' if entry.get('reason') else ''}")
        return record
    finally:
        lock.release()


def evaluate_mesh_file(mesh_path, prompt: str, cfg: EvalConfig, models, stages: Optional[Iterable[str]] = None,
                       force: bool = False) -> dict:
    """Score a mesh file (e.g. one of T3Bench's own baseline exports, model.obj) exactly as the mesh
    path scores a run's exported mesh. Writes <file>.eval/metrics_mesh.json (kept captions beside it)."""
    from generators.mesh.io import read_mesh
    from metrics.normalize import normalize_mesh

    if cfg.source != "mesh":
        raise UserError("a mesh file is scored on the mesh path: set source=mesh")
    mesh_path = Path(mesh_path)
    stages = tuple(stages) if stages is not None else T3BENCH_STAGES
    if any(s in WORLD_FRAME_STAGES for s in stages):
        raise UserError("the toybench stage scores Gaussian runs, not mesh files")
    work = mesh_path.with_name(mesh_path.name + ".eval")
    work.mkdir(exist_ok=True)
    record = read_metrics(work, metrics_file(cfg))
    todo = [s for s in stages if force or (record.get(s) or {}).get("status") != STATE_DONE
            or (record.get(s) or {}).get("settings") != stage_settings(cfg, s)]
    if not todo:
        return record
    normalized, frame = normalize_mesh(read_mesh(mesh_path))
    record.update(format=FORMAT_VERSION, source="mesh-file", mesh_file=str(mesh_path), prompt=prompt,
                  normalization=frame)
    for stage in todo:
        t0 = time.perf_counter()
        entry = {"status": STATE_DONE, **_STAGE_FUNCS[stage](normalized, prompt, cfg, models, work)}
        entry.update(model_set=models.set_name, settings=stage_settings(cfg, stage), device=str(models.device),
                     wall_s=time.perf_counter() - t0, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        record[stage] = entry
        atomic_write_json(work / metrics_file(cfg), record)
    return record


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories under `paths`: a path holding status.json, or every such folder below it."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise UserError(f"{p} does not exist")
        if (p / RUN_FILES["status"]).is_file():
            found.append(p)
        else:
            found += sorted(s.parent for s in p.rglob(RUN_FILES["status"]))
    return list(dict.fromkeys(found))


def evaluate_runs(paths: Iterable[str | Path], cfg: EvalConfig, stages: Optional[Iterable[str]] = None,
                  force: bool = False, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> dict:
    """Score every finished run under `paths` that still needs it; models load once, only if needed.

    -> {"scored": [...], "up_to_date": [...], "skipped": {dir: reason}, "failed": {dir: reason}}
    """
    from metrics.models import load_metric_models, load_set_spec

    spec = load_set_spec(cfg.models)
    stages = tuple(stages) if stages is not None else spec.stages
    set_name = spec.identity
    summary: dict = {"scored": [], "up_to_date": [], "skipped": {}, "failed": {}}
    work: list[tuple[Path, list[str]]] = []
    for run_dir in find_run_dirs(paths):
        try:
            read_run(run_dir)
            todo = pending_stages(run_dir, cfg, set_name, stages, force)
        except UserError as e:
            summary["skipped"][str(run_dir)] = str(e)
            log(f"skip: {e}")
            continue
        if todo:
            work.append((run_dir, todo))
        else:
            summary["up_to_date"].append(str(run_dir))
    if not work:
        return summary
    needed = [s for s in STAGES if any(s in todo for _, todo in work)]
    models = load_metric_models(cfg.models, needed, cfg.device, cfg)
    for run_dir, todo in work:
        try:
            evaluate_run(run_dir, cfg, models, todo, force, log)
            summary["scored"].append(str(run_dir))
        except UserError as e:  # a broken run must not stop the others
            summary["failed"][str(run_dir)] = str(e)
            log(f"failed: {e}")
    return summary
