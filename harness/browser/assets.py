"""The report's static assets: css, js, and the vendored viewer as a classic script.

A page opened from disk (file://) may load classic `<script src>` files but neither ES modules
from other files nor `fetch`: so gsplat.js (an ES module, vendor/gsplat/) is written as
`assets/gsplat.js`, a classic script that puts the module's text into `window.GSPLAT_SOURCE`;
static/viewer.js imports it from a Blob URL. The vendored file itself stays byte-identical to
the npm package's, and its licence is copied beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

from generators.io import atomic_write_text

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
GSPLAT = HERE / "vendor" / "gsplat"


def write_assets(out_dir: Path) -> list[Path]:
    """Write every asset into out_dir (the report's assets/); returns the paths written."""
    written = []
    for src in sorted(STATIC.iterdir()):
        if src.is_file():
            written.append(atomic_write_text(out_dir / src.name, src.read_text(encoding="utf-8")))
    module = (GSPLAT / "index.es.js").read_text(encoding="utf-8")
    written.append(atomic_write_text(out_dir / "gsplat.js",
                                     "// gsplat.js 1.2.9 (MIT, see gsplat-LICENSE.txt), as text for viewer.js\n"
                                     f"window.GSPLAT_SOURCE = {json.dumps(module)};\n"))
    written.append(atomic_write_text(out_dir / "gsplat-LICENSE.txt", (GSPLAT / "LICENSE").read_text(encoding="utf-8")))
    return written
