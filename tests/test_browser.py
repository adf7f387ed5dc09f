"""The benchmark browser (harness/browser/): pages, media and a real headless Chromium.

A small report is built from synthetic run folders with real files: Gaussians saved as .ply,
a turntable rendered by our CPU rasterizer, a train log, metrics.json with ToyBench numbers for
one job and T3Bench per-view details (ImageReward per icosphere point, captions, judge replies)
for another. The Chromium test (skipped when no Chromium is installed; CI installs one) opens the
report from disk and checks it as a person would: harness.browser.check.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from generators.config import RenderConfig, ViewsConfig
from generators.gaussians import Gaussians
from generators.gaussians.ply import save_ply
from generators.outputs import write_views
from harness.browser import media
from harness.browser.check import canvas_stats, check_report, find_chromium
from harness.plan import RunSpec
from harness.report import build_report

TOY_PROMPTS = {"one-object": [(0, "a red cube")], "two-objects": [(5, "a yellow cube and a blue sphere")]}
T3_PROMPTS = {"single": [(0, "a red apple"), (1, "a wooden chair")]}
METHODS = ("sds", "anchords-ipa")


def _object(seed: int, n: int = 600) -> Gaussians:
    """A coloured blob of n Gaussians around the origin (z up), different per seed."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.35, 0.35, 0.5])
    colour = torch.tensor([[1.5, -1.0, -1.0]]) if seed % 2 == 0 else torch.tensor([[-1.0, -0.5, 1.5]])
    return Gaussians(means=means, scales=torch.full((n, 3), -3.0), quats=torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
                     opacities=torch.full((n,), 2.0), sh0=(colour + 0.2 * torch.randn(n, 3, generator=g))[:, None, :],
                     shN=torch.zeros(n, 0, 3), sh_degree=0)


def _write_run(results: Path, spec: RunSpec, seed: int, metrics: dict) -> None:
    d = spec.run_dir(results)
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"method": spec.method, "prompt": spec.prompt, "seed": spec.seed,
                                                   "models": spec.models}))
    gs = _object(seed)
    save_ply(gs, d / "gaussians.ply")
    views = ViewsConfig(turntable_frames=8, turntable_fps=8, width=48, height=48, grid_views=4, distance=3.0,
                        fov_y_deg=45.0)
    write_views(d, gs, views, RenderConfig(backend="dense"))
    if spec.method == "sds":  # as runs made before runs wrote their MP4: the report makes one from the GIF
        (d / "turntable.mp4").unlink()
    steps = np.arange(0, 50, 5)
    pd.DataFrame({"step": steps, "loss": 1.0 / (1 + steps) + 0.01 * seed}).to_parquet(d / "train_log.parquet")
    (d / "status.json").write_text(json.dumps({"state": "done", "method": spec.method, "prompt": spec.prompt,
                                               "seed": spec.seed, "wall_time_s": 3.0, "num_gaussians": len(gs),
                                               "seconds_per_step": 0.05}))
    (d / "metrics.json").write_text(json.dumps({"format": 1, **metrics}))


def _toybench_record(alignment: float) -> dict:
    return {"toybench": {"status": "done", "score": alignment, "alignment": alignment, "colour_set": 1.0,
                         "shape_set": 1.0, "count": 1.0, "consistency": 0.75, "janus": 0.0, "quality": 0.3,
                         "modal_set": "red cube", "modal_is_caption": True, "view_sets": ["red cube"] * 16,
                         "num_views": 16, "reference": {"alignment": 1.0, "consistency": 1.0, "janus": 0.0,
                                                        "quality": 0.01, "colour_set": 1.0, "shape_set": 1.0,
                                                        "count": 1.0, "modal_set": "red cube", "modal_is_caption": True},
                         "model_set": "toybench", "model": {"judge_architecture": "toyworld-judge-v1"}}}


def _t3bench_record(q: float) -> dict:
    from metrics.icosphere import icosphere

    verts = icosphere(2).vertices
    view_scores = [[q / 50 + 0.1 * float(v[2]), q / 50] for v in verts]  # [162][2]: higher from above
    return {"quality": {"status": "done", "score": q, "view_scores": view_scores, "model_set": "tiny"},
            "alignment": {"status": "done", "score": 50.0, "rating": 3.0, "captions": [f"view {i}: a red thing" for i in range(12)],
                          "merged_caption": "a red apple on a table", "replies": ["merged: a red apple", "rating: 3"],
                          "judge": {"name": "test-judge"}, "model_set": "tiny"},
            "clip": {"status": "done", "score": 0.25, "model": {"model": "ViT-B-32", "pretrained": "x"}, "model_set": "tiny"}}


def _job(tmp_path: Path, prompts: dict, models: str, record) -> tuple[Path, list[RunSpec]]:
    results = tmp_path / "results"
    specs = []
    for m_i, method in enumerate(METHODS):
        for cat, items in prompts.items():
            for index, prompt in items:
                spec = RunSpec(method, method, cat, index, prompt, 0, models, {}, f"{cat}-{index}-{method}")
                _write_run(results, spec, seed=m_i + index, metrics=record(0.5 + 0.25 * m_i - 0.1 * index))
                specs.append(spec)
    return results, specs


@pytest.fixture(scope="module")
def toy_job(tmp_path_factory) -> tuple[Path, list[RunSpec]]:
    from PIL import Image

    results, specs = _job(tmp_path_factory.mktemp("toy"), TOY_PROMPTS, "toy", _toybench_record)
    for spec in specs:  # the judged views; drawn larger too for the first method's runs only
        d = spec.run_dir(results)
        Image.new("RGB", (8 * 32, 2 * 32), (90, 90, 90)).save(d / "toybench_views.png")
        if spec.method == METHODS[0]:
            Image.new("RGB", (8 * 96, 2 * 96), (90, 90, 90)).save(d / "toybench_views_large.png")
    return results, specs


@pytest.fixture(scope="module")
def toy_report(toy_job) -> Path:
    return build_report("toyjob", toy_job[1], toy_job[0])["html"].parent


@pytest.fixture(scope="module")
def t3_report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("t3")
    results, specs = _job(tmp, T3_PROMPTS, "tiny", lambda x: _t3bench_record(40 + 20 * x))
    paths = build_report("t3job", specs, results)
    return paths["html"].parent


def _links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+\.html)"', html)


def test_index_links_every_prompt_page_and_ranked(toy_report):
    html = (toy_report / "report.html").read_text()
    links = set(_links(html))
    pages = {f"prompts/{p.name}" for p in (toy_report / "prompts").glob("*.html")}
    assert pages == {"prompts/one-object-000.html", "prompts/two-objects-005.html"}
    assert pages <= links and "ranked.html" in links
    assert '<table class="sortable">' in html and "<svg" in html  # sortable tables, inline charts
    assert "ToyBench" in html and "alignment" in html
    settings = html.split("<h2>Settings as run</h2>")[1].split("</section>")[0]  # each label's CFG, as run
    assert "<td>sds</td><td>sds</td>" in settings and "`" not in settings


def test_prompt_page_has_every_method_with_video_viewer_and_numbers(toy_report):
    html = (toy_report / "prompts" / "one-object-000.html").read_text()
    for method in METHODS:
        assert f"<h3>{method} " in html
    videos = re.findall(r'<video class="turntable" src="\.\./([^"]+\.mp4)"', html)
    assert len(videos) == 2 and all((toy_report / v).stat().st_size > 0 for v in videos)
    made, own = videos  # sds: made from its GIF into media/; anchords-ipa: its own MP4, where it lies
    assert made.startswith("media/sds-") and own.startswith("../runs/anchords-ipa/") and own.endswith("/turntable.mp4")
    splats = re.findall(r'<script src="\.\./(splats/[^"]+\.js)"', html)
    assert len(splats) == 2
    assert (toy_report / "assets" / "gsplat.js").is_file() and (toy_report / "assets" / "gsplat-LICENSE.txt").is_file()
    assert "ToyBench alignment %" in html and "judged set per view" in html
    judged = re.findall(r'<img class="judged" src="\.\./([^"]+)"', html)
    assert [Path(j).name for j in judged] == ["toybench_views_large.png", "toybench_views.png"]  # METHODS order
    assert all((toy_report / j).is_file() for j in judged)
    assert html.count("as the judge saw them") == 1


def test_splat_script_holds_the_ply_bytes(toy_report):
    import base64

    script = next((toy_report / "splats").glob("sds-*.js")).read_text()
    b64 = re.search(r'= "([A-Za-z0-9+/=]+)";', script).group(1)
    data = base64.b64decode(b64)
    assert data.startswith(b"ply\n") and b"comment up_axis +z" in data


def test_thinning_keeps_the_most_opaque_and_what_the_viewer_reads(tmp_path):
    gs = _object(0, n=50)
    gs.params["opacities"].data = torch.arange(50, dtype=torch.float32)  # the last are the most opaque
    save_ply(gs, tmp_path / "g.ply")
    data = (tmp_path / "g.ply").read_bytes()
    header_len = data.index(b"end_header\n") + len(b"end_header\n")
    thin = media._thin_ply(data, header_len + 10 * len(media.VIEWER_PROPERTIES) * 4)
    head = thin[:thin.index(b"end_header\n")].decode()
    assert "element vertex 10" in head and "f_rest" not in head and "comment up_axis +z" in head
    props = [ln.split()[2] for ln in head.splitlines() if ln.startswith("property")]
    assert tuple(props) == media.VIEWER_PROPERTIES  # normals and higher SH dropped
    rows = np.frombuffer(thin[thin.index(b"end_header\n") + 11:], dtype="<f4").reshape(10, len(props))
    assert sorted(rows[:, props.index("opacity")].tolist()) == list(range(40, 50))


def test_t3bench_page_draws_icosphere_captions_and_replies(t3_report):
    html = (t3_report / "prompts" / "single-000.html").read_text()
    assert html.count('class="chart icosphere"') == 2
    assert html.count("<circle") == 2 * 162
    assert "captions per view (12)" in html and "judge replies (2)" in html and "a red apple on a table" in html
    index = (t3_report / "report.html").read_text()
    assert "hatched" in index  # published rows in the chart
    # the same tables as report.md, each on one metric: the paper's Table 1 is quality-only
    assert "T3Bench quality only, AnchorDS Table 1 layout" in index
    assert "T3Bench (Quality + Alignment) / 2, T3Bench leaderboard layout" in index
    assert "(AnchorDS Table 1 layout): (Quality + Alignment) / 2" not in index


def test_ranked_page_embeds_per_prompt_values(t3_report):
    html = (t3_report / "ranked.html").read_text()
    data = json.loads(re.search(r'<script id="ranking-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert data["labels"] == list(METHODS)
    assert {m["key"] for m in data["metrics"]} >= {"t3bench", "quality", "alignment", "clip"}
    first = data["items"][0]["values"]
    assert first["anchords-ipa"]["quality"] > first["sds"]["quality"]
    assert "Best and worst prompts per method" in html


def test_second_report_rewrites_no_media(toy_job, toy_report):
    made = sorted((toy_report / "media").glob("*.mp4")) + sorted((toy_report / "splats").glob("*.js"))
    assert len(made) == 2 + 4  # sds's two videos made from GIFs; every run's Gaussians
    before = {p: p.stat().st_mtime_ns for p in made}
    notes = {p: p.read_text().splitlines()[0] for p in made if p.suffix == ".js"}
    build_report("toyjob", toy_job[1], toy_job[0])
    assert {p: p.stat().st_mtime_ns for p in made} == before
    html = (toy_report / "prompts" / "one-object-000.html").read_text()
    assert all(n[3:] in html for n in notes.values())  # the note comes back from the script's first line


def test_canvas_stats_tells_blank_from_drawn():
    import io

    from PIL import Image

    def png(a):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        return buf.getvalue()

    blank = canvas_stats(png(np.full((20, 20, 3), 17, np.uint8)))
    drawn = canvas_stats(png(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)))
    assert blank == {"colours": 1, "spread": 0} and drawn["colours"] > 8 and drawn["spread"] > 24


@pytest.mark.slow
@pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (CI installs it: apt-get install chromium)")
@pytest.mark.parametrize("which", ["toy_report", "t3_report"])
def test_report_in_headless_chromium(which, request):
    report = request.getfixturevalue(which)
    res = check_report(report)
    assert res.ok, "\n".join(res.errors)
    assert len(res.pages) == 1 + len(list((report / "prompts").glob("*.html")))  # ranked + every prompt
    assert res.canvas["colours"] >= 8 and res.video["after"] > res.video["before"]
    assert not math.isnan(res.video["after"])
