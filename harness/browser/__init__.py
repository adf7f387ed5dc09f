"""The benchmark browser: the HTML side of `make report` (opens from disk, no server).

    from harness.browser import build_browser
    pages = build_browser(out_dir, job, rows, refs, markdown_text, grids, toy_grids)

Writes, into the report folder (RESULTS/<job>/):

    report.html           index: sortable tables, per-category charts (intervals where the tables
                          carry them, published reference rows beside ours), loss curves per method,
                          every prompt with its per-method numbers, the picture grids
    ranked.html           prompts where two chosen methods differ most; best / worst prompts per method
    prompts/<page>.html   one page per prompt: every method side by side with its turntable video,
                          its Gaussians in an interactive viewer (gsplat.js), numbers, captions and
                          judge replies, per-view ImageReward on the icosphere, loss curves
    assets/               css, js, the vendored viewer (harness/browser/vendor/) and its licence
    media/, splats/       turntable videos, the Gaussians as classic scripts (see vendor/gsplat/README.md)

Templates and static files live beside this module (templates/, static/); data.py gathers what a
page shows from the report rows and the run folders, media.py writes videos and splat scripts.
"""

from harness.browser.build import build_browser

__all__ = ["build_browser"]
