"""Write the benchmark browser (see harness/browser/__init__.py for what and where)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from generators.io import atomic_write_text
from harness.browser import media
from harness.browser.assets import write_assets
from harness.browser.data import (PromptPage, best_and_worst, fmt, metrics_present, page_stem, prompt_pages,
                                  ranking_data, run_metric)
from harness.browser.svg import colour, icosphere_svg, loss_svg
from harness.report_figures import cell_interval, grouped_bars_svg, loss_curves_svg
from harness.report_layout import HEADER as LAYOUT_HEADER, TITLE as LAYOUT_TITLE, layout_table
from harness.report_size import HEADER as SIZE_HEADER, TITLE as SIZE_TITLE, size_table
from harness.report_settings import SETTINGS_HEADER, LabelSettings
from harness.report_tables import (CATEGORY_TITLES, TOYBENCH_ALL, clip_table, is_t3bench_row, is_toybench_row,
                                   method_rows, scorer_groups, scorer_title, t3bench_tables, toybench_categories,
                                   toybench_category_title, toybench_rows, toybench_table)

TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class BrowserConfig:
    """How much the pages carry. Presentation only: no number in a table depends on these."""

    video_min_height: int = 256  # px: smaller turntables (ToyWorld's 32 px) are upscaled, nearest-neighbour
    max_splat_bytes: int = 8 * 2**20  # per run: ~150k Gaussians (56 bytes each); more: the most opaque (media.splat_script)
    max_live_viewers: int = 8  # 3D viewers started on load; the rest start on a click (WebGL context limit 16)
    max_loss_points: int = 400  # per run and curve
    ranked_k: int = 5  # best / worst prompts listed per method
    viewer_radius: float = 3.5  # initial orbit distance, world units (objects fill about [-1, 1])
    viewer_fov_deg: float = 40.0  # vertical field of view of the 3D viewer


def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_attr"] = lambda v: json.dumps(v)
    return env


_BOLD = re.compile(r"\*\*(.+?)\*\*")


def html_table(header: list[str], body: list[list[str]]) -> dict:
    """A report_tables (header, body) as a template table: markdown bold -> strong, a sort key per
    cell (its leading number, else its text)."""
    def cell(text: str) -> dict:
        text = str(text)
        m = re.match(r"\s*([+-]?\d+(?:\.\d+)?)", text.replace("**", ""))
        return {"strong": bool(_BOLD.fullmatch(text.strip())), "text": _BOLD.sub(r"\1", text),
                "sort": m.group(1) if m else ""}
    return {"header": header, "rows": [[cell(c) for c in row] for row in body]}


def _t3bench_chart(rows: list[dict], refs: list[dict], colours: dict) -> Optional[str]:
    mrows = method_rows([r for r in rows if is_t3bench_row(r)])
    cats = [c for c in CATEGORY_TITLES if any(c in m.avg for m in mrows)]
    if not cats:
        return None
    groups = [CATEGORY_TITLES[c] for c in cats] + ["All"]
    series = []
    for ref in refs:
        if ref["table"] == "t3bench":
            for r in ref["rows"]:
                series.append({"label": r["label"], "published": True,
                               "values": {CATEGORY_TITLES[c]: r.get(c) for c in cats} | {"All": r.get("all")}})
    for m in mrows:
        vals = {CATEGORY_TITLES[c]: m.avg[c].value for c in cats if c in m.avg}
        ivals = {CATEGORY_TITLES[c]: cell_interval(m.avg[c]) for c in cats if c in m.avg}
        if m.all is not None:
            vals["All"], ivals["All"] = m.all.value, cell_interval(m.all)
        series.append({"label": m.label, "values": vals, "intervals": {k: v for k, v in ivals.items() if v},
                       "colour": colours.get(m.label)})
    return grouped_bars_svg(groups, series, "(Quality + Alignment) / 2",
                            "T3Bench per category: ours (error bars: the tables' intervals, where given)\n"
                            "and the published rows (grey, hatched)")


def _toybench_charts(rows: list[dict], colours: dict) -> list[str]:
    trows = toybench_rows(rows)
    if not trows:
        return []
    cats = list(dict.fromkeys(c for t in trows for c in t.cells if c != TOYBENCH_ALL)) + [TOYBENCH_ALL]
    out = []
    for metric, title, scale in (("alignment", "alignment %", 100.0),
                                 ("janus", "Janus rate % (lower is better)", 100.0),
                                 ("quality", "colour-area error (lower is better)", 1.0)):
        series = []
        for t in trows:
            vals, ivals = {}, {}
            for c in cats:
                cell = t.cells.get(c)
                v = None if cell is None else cell.values.get(metric)
                if v is not None:
                    vals[toybench_category_title(c)] = v * scale
                    iv = cell_interval(cell, metric)
                    if iv:
                        ivals[toybench_category_title(c)] = (iv[0] * scale, iv[1] * scale)
            series.append({"label": "ground truth" if t.ground_truth else t.label, "values": vals,
                           "intervals": ivals, "published": t.ground_truth, "tag": "reference",
                           "colour": colours.get(t.label)})
        svg = grouped_bars_svg([toybench_category_title(c) for c in cats], series, title,
                               f"ToyBench {title}\nours; hatched: the ToyWorld renderer's ground truth")
        if svg:
            out.append(svg)
    return out


def _tables(rows: list[dict], refs: list[dict]) -> list[dict]:
    by_table = {t: [r for r in refs if r["table"] == t] for t in ("t3bench", "ablation", "clip")}
    t3 = [r for r in rows if is_t3bench_row(r)]
    out = []
    if t3:
        for key, group in scorer_groups(t3):  # the Markdown report's tables, one metric each
            for _, heading, _, table in t3bench_tables(group, by_table, scorer_title(key)):
                out.append({"title": heading, **html_table(*table)})
        clip_ref = by_table["clip"][0] if by_table["clip"] else None
        out.append({"title": "CLIP score", **html_table(*clip_table(method_rows(t3), t3, clip_ref))})
    trows = toybench_rows(rows)
    if trows:
        out.append({"title": "ToyBench (ToyWorld judge on 16 views per run)", **html_table(*toybench_table(trows))})
        toy = [r for r in rows if is_toybench_row(r)]
        layout = layout_table(toy, toybench_categories(toy), toybench_category_title)
        if layout:
            out.append({"title": LAYOUT_TITLE, **html_table(LAYOUT_HEADER, layout)})
        size = size_table(toy, toybench_categories(toy), toybench_category_title)
        if size:
            out.append({"title": SIZE_TITLE, **html_table(SIZE_HEADER, size)})
    return out


def _settings(rows: list[dict]) -> dict:
    settings = LabelSettings.of(rows)
    return {"header": SETTINGS_HEADER, "rows": settings.table(), "mixed": settings.mixed()}


def _write_media(pages: list[PromptPage], out: Path, cfg: BrowserConfig) -> None:
    for page in pages:
        for views in page.seeds.values():
            for v in views:
                run_dir = Path(v.row["run_dir"])
                # a run's unreadable turntable or .ply (empty, truncated) costs that picture only
                try:
                    path, kind = media.turntable(run_dir, out, v.key, cfg.video_min_height)
                except (OSError, ValueError, EOFError) as e:
                    path, kind = None, f"unreadable turntable ({type(e).__name__}: {e})"
                if path:
                    v.video, v.video_kind = Path(path).as_posix(), kind
                try:
                    name, note = media.splat_script(run_dir, out / "splats", v.key, cfg.max_splat_bytes)
                except (OSError, ValueError) as e:
                    name, note = None, f"unreadable gaussians.ply ({type(e).__name__}: {e})"
                v.splat, v.splat_note = (f"splats/{name}" if name else None), note
                for key, attr in (("toybench_views_png", "judged_views"),
                                  ("toybench_views_large_png", "judged_views_large")):
                    if v.row.get(key):  # shown where it lies, as the run's own video
                        setattr(v, attr, Path(os.path.relpath(v.row[key], out)).as_posix())


def _prompt_list(pages: list[PromptPage], labels: list[str], metric) -> dict:
    header = ["Category", "#", "Prompt", "Seed", *labels]
    rows = []
    for p in pages:
        for seed, views in p.seeds.items():
            by = {v.label: v for v in views}
            rows.append({"page": p.file, "category": p.category, "index": "" if p.index is None else p.index,
                         "prompt": p.prompt, "seed": seed,
                         "values": [fmt(metric, run_metric(by[lb].row, metric.key)) if lb in by else "—"
                                    for lb in labels]})
    return {"header": header, "rows": rows, "metric": metric.title}


def _linked(grids: list[dict], pages: list[PromptPage]) -> list[dict]:
    """The picture grids, each with the prompt page it belongs to."""
    files = {p.stem: p.file for p in pages}
    return [{**g, "page": files.get(page_stem(g["category"], g["prompt_index"], g["prompt"]))} for g in grids]


def build_browser(out: Path, job: str, rows: list[dict], refs: list[dict], markdown_text: str,
                  grids: list[dict], toy_grids: list[dict], cfg: BrowserConfig = BrowserConfig()) -> dict:
    """Write report.html, ranked.html, prompts/*.html and their assets into `out`; returns
    {index, ranked, pages: [paths]}."""
    out = Path(out)
    env = _env()
    write_assets(out / "assets")
    metrics = metrics_present(rows)
    labels = list(dict.fromkeys(r["label"] for r in rows))
    pages = prompt_pages(rows, metrics, cfg.max_loss_points)
    _write_media(pages, out, cfg)
    notes = [line[2:].replace("**", "") for line in markdown_text.splitlines() if line.startswith("> ")]
    common = {"job": job, "labels": labels, "colours": {lb: colour(i) for i, lb in enumerate(labels)}}

    written = []
    for page in pages:
        seeds = []
        for seed, views in page.seeds.items():
            curves = {v.label: v.loss for v in views}
            seeds.append({"seed": seed, "views": views, "loss_svg": loss_svg(curves, labels),
                          "icospheres": {v.key: icosphere_svg(v.icosphere) for v in views}})
        path = out / page.file
        atomic_write_text(path, env.get_template("prompt.html").render(
            **common, root="../", page=page, seeds=seeds, max_live=cfg.max_live_viewers,
            radius=cfg.viewer_radius, fov=cfg.viewer_fov_deg, notes=notes))
        written.append(path)

    loss_by_label: dict = {}
    for page in pages:
        for views in page.seeds.values():
            for v in views:
                if v.loss:
                    loss_by_label.setdefault(v.label, []).append(v.loss)
    charts = [c for c in [_t3bench_chart(rows, refs, common["colours"]), *_toybench_charts(rows, common["colours"])]
              if c]
    primary = metrics[0] if metrics else None
    scored = sum(r.get("status") == "scored" for r in rows)
    index = out / "report.html"
    atomic_write_text(index, env.get_template("index.html").render(
        **common, root="", notes=notes, tables=_tables(rows, refs), charts=charts,
        loss=loss_curves_svg(loss_by_label, labels), n_runs=len(rows), n_scored=scored,
        seeds=sorted({r["seed"] for r in rows}, key=str),
        prompts=_prompt_list(pages, labels, primary) if primary else None,
        grids=_linked(grids, pages), toy_grids=_linked(toy_grids, pages), markdown=markdown_text,
        gaps=[r for r in rows if r.get("status") != "scored"],
        settings=_settings(rows)))
    ranked = out / "ranked.html"
    data = ranking_data(pages, metrics)
    atomic_write_text(ranked, env.get_template("ranked.html").render(
        **common, root="", notes=notes, data_json=json.dumps(data).replace("</", "<\\/"),
        best_worst=[{"metric": m.title, "labels": best_and_worst(pages, m, cfg.ranked_k)} for m in metrics]))
    return {"index": index, "ranked": ranked, "pages": written}
