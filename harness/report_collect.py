"""Collect one row per expected run of a job: identity, state, every metric, timings, models.

A run is expected when the job's plan names it (harness.plan.RunSpec); its directory may be
missing, failed, unfinished, finished but unscored, or scored. Nothing is dropped: every state
becomes a row, so the report can count it and list it as a gap.

    rows = collect_rows(specs, results)          # list of dicts, one per RunSpec, plan order
    rows = collect_rows(run_dirs, results)       # or plain run directories (all "expected")

Two benchmarks share the rows. A run of a ToyBench prompt (categories one_object / two_objects,
run folders `one-object` / `two-objects`) or of the `toy` model set is a ToyBench run: it is
"scored" when its `toybench` stage has a number, and the T3Bench stages are not expected of it.
Every other run is a T3Bench run (quality, alignment, clip expected), as before. ToyBench runs
get the flat toybench_* columns (and toybench_ref_* for the ground truth of the same cameras);
T3Bench runs get them only when their metrics.json holds a toybench record.

A file that cannot be read (empty, truncated, valid JSON of the wrong shape, a truncated PNG) never
stops the report: a corrupt status.json or metrics.json makes the run's row "corrupt", with the
file and what to do as its reason; an unreadable picture or attempts.json is left out and named in
the row's `problems` (harness.report prints them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from generators.outputs import RUN_FILES
from harness.store import stage_has_score

METRICS_FILE = "metrics.json"
# = metrics.evaluate.METRICS_FILES: the scores of each way of looking at a run
METRICS_FILES = {"gaussians": METRICS_FILE, "mesh": "metrics_mesh.json"}
ATTEMPTS_FILE = "attempts.json"
STAGES = ("quality", "alignment", "clip")  # the T3Bench stages
TOYBENCH = "toybench"  # the ToyBench stage (metrics/toybench.py)
TOYBENCH_VIEWS_FILE = "toybench_views.png"  # = metrics.evaluate.TOYBENCH_VIEWS: the 16 judged views
TOYBENCH_VIEWS_LARGE_FILE = "toybench_views_large.png"  # = metrics.evaluate.TOYBENCH_VIEWS_LARGE: the same, larger
TOY_MODEL_SET = "toy"  # the generator model set ToyBench scores
# the numbers of a toybench record (and of its "reference"), in table order
TOYBENCH_NUMBERS = ("alignment", "consistency", "janus", "quality", "colour_set", "shape_set", "count",
                    "object_area", "read_share")  # the last two: diagnostics (harness/report_size.py)
TOYBENCH_REF_KEYS = (*TOYBENCH_NUMBERS, "modal_set", "modal_is_caption")
# metrics.toybench_controls.CONTROLS, scored beside each run (metric version 2): flat columns
# toybench_ctl_<slug>_<number>, e.g. toybench_ctl_fitted_truth_alignment
TOYBENCH_CONTROLS = ("empty", "ball", "noise", "other caption", "fitted truth")
TOYBENCH_CONTROL_NUMBERS = ("alignment", "consistency", "janus", "quality")


def control_slug(control: str) -> str:
    return control.replace(" ", "_")

# Row states, from worst to best. "scored" = every stage has its number.
CORRUPT, MISSING, FAILED, RUNNING, STOPPED, UNSCORED, PARTIAL, SCORED = (
    "corrupt", "missing", "failed", "running", "stopped", "unscored", "partial", "scored")
REDRAW_ADVICE = {  # what to do about an unreadable picture, per file
    RUN_FILES["grid"]: "rerun the run with `harness benchmark --force` to draw it again",
    TOYBENCH_VIEWS_FILE: "delete it and rerun `harness eval --force --stages toybench` to draw it again",
    TOYBENCH_VIEWS_LARGE_FILE: "delete it and rerun `harness eval --force --stages toybench` to draw it again",
}


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _read_yaml(path: Path) -> Optional[Any]:
    from generators.untrusted import safe_load  # bounded: a run folder is not trusted input

    try:
        return safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _flat(value: Any) -> Any:
    """A value a parquet column can hold whatever a file wrote: scalars as they are, anything else
    (a list, a mapping) as its JSON text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _text(value: Any) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return str(value) if isinstance(value, (bool, int, float)) else _flat(value)


def _numeric(value: Any) -> Any:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _record(path: Path, problems: list) -> Optional[dict]:
    """A run-store JSON file (harness.store.read_record); a corrupt one is named in `problems`."""
    from generators.errors import CorruptFileError
    from harness.store import read_record

    try:
        return read_record(path)
    except CorruptFileError as e:
        problems.append(str(e))
        return None


def readable_picture(path: Path, problems: list) -> Optional[str]:
    """str(path) when it is an image that decodes to the end; None when absent, and None with a
    note in `problems` when it is empty, truncated or not an image."""
    from PIL import Image

    if not path.is_file():
        return None
    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, SyntaxError, ValueError) as e:
        advice = REDRAW_ADVICE.get(path.name, "delete it")
        problems.append(f"{path}: cannot be read as a picture (truncated?) ({e}); {advice}")
        return None
    return str(path)


def toybench_category_slugs() -> dict[str, str]:
    """Run-folder category slug -> ToyBench category ('one-object' -> 'one_object'), suite order."""
    from harness.run_ids import slugify
    from prompts.suites import TOYBENCH_CATEGORIES

    return {slugify(c): c for c in TOYBENCH_CATEGORIES.values()}


def _prompt_index(category: str, prompt: str) -> Optional[int]:
    """The prompt's line in its T3Bench or ToyBench category file (None for other suites)."""
    from prompts.suites import T3BENCH_CATEGORIES, TOYBENCH_CATEGORIES, load_suite

    if not prompt:
        return None
    if category in T3BENCH_CATEGORIES:
        suite = f"t3bench-{category}"
    elif category in toybench_category_slugs():
        short = {v: k for k, v in TOYBENCH_CATEGORIES.items()}[toybench_category_slugs()[category]]
        suite = f"toybench-{short}"
    else:
        return None
    for e in load_suite(suite):
        if e.prompt == prompt:
            return e.index
    return None


def benchmark_of(category: str, models: Any) -> str:
    """'toybench' for a ToyBench prompt category or the `toy` model set, else 't3bench'."""
    return TOYBENCH if category in toybench_category_slugs() or models == TOY_MODEL_SET else "t3bench"


def _identity_from_dir(run_dir: Path, results: Path) -> dict:
    """method/category/run_id from RESULTS/runs/<method>/<category>/<run_id>, prompt etc. from config.yaml."""
    cfg = _mapping(_read_yaml(run_dir / RUN_FILES["config"]))
    status = _mapping(_read_json(run_dir / RUN_FILES["status"]))
    parts = run_dir.parts
    method = cfg.get("method") or status.get("method") or (parts[-3] if len(parts) >= 3 else "?")
    category = parts[-2] if len(parts) >= 2 else "?"
    prompt = cfg.get("prompt") or status.get("prompt") or ""
    return {"label": method, "method": method, "category": category, "prompt_index": _prompt_index(category, prompt),
            "prompt": prompt, "seed": cfg.get("seed", status.get("seed")), "models": cfg.get("models", status.get("models")),
            "run_id": run_dir.name, "run_dir": str(run_dir)}


def _identity_from_spec(spec: Any, results: Path) -> dict:
    return {"label": spec.label, "method": spec.method, "category": spec.category, "prompt_index": spec.index,
            "prompt": spec.prompt, "seed": spec.seed, "models": spec.models, "run_id": spec.run_id,
            "run_dir": str(spec.run_dir(results))}


def _model_name(model: Any) -> Optional[str]:
    """'id@revision' (or the dict's most specific name) of a recorded model."""
    if model is None:
        return None
    if isinstance(model, str):
        return model
    if isinstance(model, dict):
        name = model.get("id") or model.get("model") or model.get("name") or model.get("path")
        rev = model.get("revision")
        return f"{name}@{rev}" if name and rev else name
    return str(model)


def judge_id(judge: dict) -> Optional[str]:
    """A judge as the report names it: its name, its endpoint, and its words when not T3Bench's."""
    if not judge:
        return None
    name = str(judge.get("name") or judge.get("model") or judge.get("kind"))
    if judge.get("base_url"):
        name += f" @ {judge['base_url']}"
    templates = judge.get("templates")
    if isinstance(templates, dict) and templates.get("source") not in (None, "t3bench"):
        name += f", templates {templates.get('source')} ({str(templates.get('sha256'))[:8]})"
    return name


def _stage_columns(stage: str, rec: Any) -> dict:
    """Flat columns of one metrics.json stage; a stage without a number says why."""
    out: dict = {f"{stage}_status": None, f"{stage}_reason": None}
    if not isinstance(rec, dict):
        out[f"{stage}_status"] = "missing"
        out[f"{stage}_reason"] = "not scored"
        return out
    status = rec.get("status", "done")
    score = rec.get("score")
    out[f"{stage}_status"] = status if score is not None or status != "done" else "no-score"
    out[f"{stage}_reason"] = rec.get("reason") or rec.get("missing_reason")
    out[stage] = float(score) if stage_has_score(rec) else None
    out[f"{stage}_model_set"] = rec.get("model_set")
    out[f"{stage}_eval_s"] = sum(v for v in _mapping(rec.get("timing")).values() if isinstance(v, (int, float))) or None
    if stage == "quality":
        out["quality_model"] = _model_name(rec.get("model"))
    elif stage == "alignment":
        rating = rec.get("rating")
        out["alignment_rating"] = float(rating) if isinstance(rating, (int, float)) else None
        judge = rec.get("judge") or {}
        out["judge"] = judge_id(judge) if isinstance(judge, dict) else str(judge)
        out["judge_settings"] = json.dumps(judge, sort_keys=True, default=str) if judge else None
        out["captioner"] = _model_name(rec.get("captioner"))
    elif stage == "clip":
        model = rec.get("model")
        if isinstance(model, dict):
            out["clip_model"] = model.get("model") or model.get("name")
            out["clip_pretrained"] = model.get("pretrained")
        else:
            out["clip_model"] = model
            out["clip_pretrained"] = rec.get("pretrained")
    return out


def _number(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _toybench_columns(rec: Any, run_dir: Path, problems: list) -> dict:
    """Flat toybench_* columns of a metrics.json toybench record (None where it has no number)."""
    out: dict = {"toybench_status": None, "toybench_reason": None, TOYBENCH: None}
    out.update({f"toybench_{k}": None for k in (*TOYBENCH_NUMBERS, "modal_set", "modal_is_caption")})
    out.update({f"toybench_ref_{k}": None for k in TOYBENCH_REF_KEYS})
    out.update({f"toybench_ctl_{control_slug(c)}_{k}": None for c in TOYBENCH_CONTROLS for k in TOYBENCH_CONTROL_NUMBERS})
    out.update({"toybench_view_sets": None, "toybench_num_views": None, "toybench_model_set": None,
                "toybench_judge": None, "toybench_settings": None, "toybench_eval_s": None,
                "toybench_views_png": None, "toybench_views_large_png": None})
    if not isinstance(rec, dict):
        out["toybench_status"], out["toybench_reason"] = "missing", "not scored"
        return out
    status = rec.get("status", "done")
    done = status == "done"
    score = _number(rec.get("score"))
    out["toybench_status"] = status if score is not None or not done else "no-score"
    out["toybench_reason"] = rec.get("reason") or rec.get("missing_reason")
    out[TOYBENCH] = score if done else None
    ref = rec.get("reference") if isinstance(rec.get("reference"), dict) else {}
    for k in TOYBENCH_NUMBERS:
        out[f"toybench_{k}"] = _number(rec.get(k)) if done else None
        out[f"toybench_ref_{k}"] = _number(ref.get(k)) if done else None
    if done:
        out["toybench_modal_set"] = rec.get("modal_set")
        out["toybench_modal_is_caption"] = rec.get("modal_is_caption")
        out["toybench_ref_modal_set"] = ref.get("modal_set")
        out["toybench_ref_modal_is_caption"] = ref.get("modal_is_caption")
        controls = rec.get("controls") if isinstance(rec.get("controls"), dict) else {}
        for c in TOYBENCH_CONTROLS:
            for k in TOYBENCH_CONTROL_NUMBERS:
                out[f"toybench_ctl_{control_slug(c)}_{k}"] = _number((controls.get(c) or {}).get(k))
        views = rec.get("view_sets")
        out["toybench_view_sets"] = json.dumps(views) if isinstance(views, list) else None
        out["toybench_num_views"] = rec.get("num_views")
    out["toybench_model_set"] = rec.get("model_set")
    model = rec.get("model") if isinstance(rec.get("model"), dict) else {}
    out["toybench_judge"] = model.get("judge_architecture") or model.get("judge")
    settings = rec.get("settings")
    out["toybench_settings"] = json.dumps(settings, sort_keys=True, default=str) if settings else None
    out["toybench_eval_s"] = sum(v for v in _mapping(rec.get("timing")).values() if isinstance(v, (int, float))) or None
    out["toybench_views_png"] = readable_picture(run_dir / TOYBENCH_VIEWS_FILE, problems)
    out["toybench_views_large_png"] = readable_picture(run_dir / TOYBENCH_VIEWS_LARGE_FILE, problems)
    return out


def _layout_columns(run_dir: Path, prompt: str, finished: bool) -> dict:
    """toybench_layout_*: where a finished two-object run put its two colour clouds
    (metrics/toybench_layout.py), a diagnostic of what the judge does not look at; None where
    the caption has no two colours or the run no readable Gaussians."""
    from metrics.toybench_layout import run_layout

    layout = run_layout(run_dir, prompt) if finished else None
    return {f"toybench_layout_{k}": (None if layout is None else float(layout[k]))
            for k in ("vertical", "dy", "stacked")}


def _state(row: dict, status: Optional[dict], metrics: Optional[dict], attempts: Optional[dict]) -> tuple[str, Optional[str]]:
    if status is None:
        if attempts and attempts.get("failures"):
            return FAILED, attempts.get("last_reason") or "failed before writing status.json"
        return MISSING, "no run directory" if not Path(row["run_dir"]).is_dir() else "no status.json (never started)"
    state = status.get("state")
    if state == "failed":
        return FAILED, status.get("reason") or (attempts or {}).get("last_reason") or "failed (no reason recorded)"
    if state == "running":
        return RUNNING, "not finished (running, or interrupted)"
    if state != "done":
        return STOPPED, f"not finished (state {state!r})"
    if metrics is None:
        return UNSCORED, f"finished, no {METRICS_FILE} yet"
    expected = (TOYBENCH,) if row.get("benchmark") == TOYBENCH else STAGES
    missing = [s for s in expected if row.get(s) is None]
    if missing:
        reasons = "; ".join(f"{s}: {row.get(f'{s}_reason') or row.get(f'{s}_status')}" for s in missing)
        return PARTIAL, reasons
    return SCORED, None


def collect_row(identity: dict, source: str = "gaussians") -> dict:
    run_dir = Path(identity["run_dir"])
    corrupt: list = []  # status.json or metrics.json: the row cannot be trusted
    problems: list = []  # a picture or attempts.json: left out, the row stands
    status = _record(run_dir / RUN_FILES["status"], corrupt)
    metrics = _record(run_dir / METRICS_FILES[source], corrupt)
    attempts = _record(run_dir / ATTEMPTS_FILE, problems)
    row = dict(identity)
    row["source"] = source
    row["benchmark"] = benchmark_of(row["category"], row.get("models"))
    for stage in STAGES:
        row.update(_stage_columns(stage, (metrics or {}).get(stage)))
    toy = (metrics or {}).get(TOYBENCH) if isinstance(metrics, dict) else None
    if row["benchmark"] == TOYBENCH or toy is not None:
        row.update(_toybench_columns(toy, run_dir, problems))
        row.update(_layout_columns(run_dir, row["prompt"], (status or {}).get("state") == "done"))
    row["status"], row["reason"] = _state(row, status, metrics if isinstance(metrics, dict) else None, attempts)
    row["reason"] = _text(row["reason"])
    if corrupt:
        row["status"], row["reason"] = CORRUPT, "; ".join(corrupt)
    status = status or {}
    row["run_state"] = status.get("state")
    for key in ("wall_time_s", "seconds_per_step", "num_gaussians", "peak_memory_mb", "steps", "device"):
        row[key] = _text(status.get(key)) if key == "device" else _numeric(status.get(key))
    row["models_version"] = _text(status.get("models_version")) or None  # the set's pinned weights
    row["models_resolved"] = json.dumps(status.get("models_resolved") or {}, sort_keys=True, default=str)
    from harness.report_settings import run_settings  # (it imports the tables, which import this module)

    settings = (run_settings(_read_yaml(run_dir / RUN_FILES["config"]), status.get("models_resolved"))
                if row["run_state"] else None)
    row["settings"] = json.dumps(settings, sort_keys=True) if settings is not None else None  # what the label ran
    row["views_png"] = readable_picture(run_dir / RUN_FILES["grid"], problems)
    row["problems"] = "; ".join(corrupt + problems) or None
    for key, value in row.items():  # what a hand-edited or foreign file holds must not break the table
        row[key] = _text(value) if key.endswith(("_reason", "_status", "_model_set")) else _flat(value)
    return row


def collect_rows(runs: Iterable[Any], results: str | Path, source: str = "gaussians") -> list[dict]:
    """One row per run (RunSpec or run directory), in the given order, with the scores of `source`
    (gaussians: metrics.json; mesh: metrics_mesh.json, the exported-mesh path)."""
    results = Path(results)
    rows = []
    for run in runs:
        if isinstance(run, (str, Path)):
            identity = _identity_from_dir(Path(run), results)
        else:
            identity = _identity_from_spec(run, results)
        rows.append(collect_row(identity, source))
    return rows
