"""Load a written report in a real headless Chromium and check it as a person would.

    python -m harness.browser.check results/demo/toybench-demo [--screenshots docs/browser]

Through Chromium's DevTools protocol (a small client over `websockets`): opens report.html from
disk, then every page it links to (ranked.html, prompts/*.html), and fails on any console error,
uncaught exception or resource that did not load; on the first prompt page it also checks that a
3D viewer's canvas is not blank (the pixels of a screenshot of it) and that a turntable video
plays (its time advances). Exit 0 when every check passes, 1 otherwise, 2 without Chromium.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from generators.errors import report_error
from typing import Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# SwiftShader gives headless Chromium a software WebGL2 (no GPU on CI)
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-angle=swiftshader",
                  "--enable-unsafe-swiftshader", "--autoplay-policy=no-user-gesture-required",
                  "--no-first-run", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio")
PAGE_TIMEOUT_S = 60.0
VIEWER_SETTLE_S = 3.0  # after the viewer says "ready": sorting workers and the first frames


def find_chromium() -> Optional[str]:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) or Path(env).is_file() else None
    return next((shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n)), None)


class DevTools:
    """One headless Chromium and one page in it, driven over the DevTools protocol."""

    def __init__(self, binary: str, width: int = 1400, height: int = 1000):
        from websockets.sync.client import connect

        self._profile = tempfile.mkdtemp(prefix="report-check-")
        self._proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--window-size={width},{height}",
                                       "--remote-debugging-port=0", f"--user-data-dir={self._profile}", "about:blank"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = self._devtools_url()
        self._ws = connect(url, max_size=None, open_timeout=30).__enter__()
        self._id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    def _devtools_url(self) -> str:
        deadline = time.monotonic() + 30
        lines = []
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if not line and self._proc.poll() is not None:
                break
            lines.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                return m.group(1)
        self.close()
        raise RuntimeError("Chromium did not start: " + "".join(lines[-10:]))

    def call(self, method: str, params: Optional[dict] = None, session: bool = False, timeout: float = PAGE_TIMEOUT_S) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        self._ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            reply = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float = PAGE_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        for i, e in enumerate(self.events):
            if e["method"] == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            e = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if e.get("method") == method:
                return e
            if "method" in e:
                self.events.append(e)
        raise TimeoutError(f"no {method} within {timeout:.0f} s")

    def open(self, url: str) -> None:
        self.events.clear()
        self.call("Page.navigate", {"url": url}, session=True)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float = PAGE_TIMEOUT_S):
        res = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                        session=True, timeout=timeout)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res["result"].get("value")

    def screenshot(self, clip: Optional[dict] = None, full_page: bool = False) -> bytes:
        params: dict = {"format": "png"}
        if clip:
            params["clip"] = {**clip, "scale": 1}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.evaluate("({w: document.documentElement.scrollWidth, h: Math.min(6000, document.documentElement.scrollHeight)})")
            params["clip"] = {"x": 0, "y": 0, "width": size["w"], "height": size["h"], "scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", params, session=True)["data"])

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen since the last open()."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        try:
            self._ws.close()
        except Exception:
            pass
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        shutil.rmtree(self._profile, ignore_errors=True)


@dataclass
class CheckResult:
    pages: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # empty = passed
    canvas: Optional[dict] = None  # {distinct colours, spread} of the first viewer's screenshot
    video: Optional[dict] = None  # {before, after} currentTime of the first video
    screenshots: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def canvas_stats(png: bytes) -> dict:
    """How much a screenshot varies: distinct colours and the largest per-channel spread."""
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return {"colours": int(len(np.unique(a, axis=0))), "spread": int((a.max(0).astype(int) - a.min(0)).max())}


LINKS_JS = """Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))
  .filter(h => /\\.html$/.test(h) && !/^[a-z]+:/.test(h))"""
VIEWER_JS = """new Promise((resolve) => {
  const el = document.querySelector('.viewer[data-splat]');
  if (!el) return resolve(null);
  const t0 = Date.now();
  (function poll() {
    const s = el.getAttribute('data-state');
    if (s === 'ready' || s === 'error' || Date.now() - t0 > %d) {
      const r = el.querySelector('canvas').getBoundingClientRect();
      resolve({state: s, x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height,
               note: el.querySelector('.viewer-note').textContent});
    } else setTimeout(poll, 100);
  })();
})"""
VIDEO_JS = """(async () => {
  const v = document.querySelector('video');
  if (!v) return null;
  v.muted = true;
  v.pause();
  v.loop = false;  // a short turntable would wrap around while we wait
  v.currentTime = 0;
  await new Promise(r => v.readyState >= 1 && !v.seeking ? r() : v.addEventListener('seeked', r, {once: true}));
  const before = v.currentTime;
  try { await v.play(); } catch (e) { return {error: String(e)}; }
  await new Promise(r => setTimeout(r, 300));
  return {before, after: v.currentTime, ended: v.ended, readyState: v.readyState, error: v.error && v.error.code,
          canH264: v.canPlayType('video/mp4; codecs="avc1.42E01E"')};
})()"""


def check_report(report_dir: Path, screenshots: Optional[Path] = None, binary: Optional[str] = None) -> CheckResult:
    """Open the report's index and every page it links to; see the module docstring."""
    report_dir = Path(report_dir).resolve()
    index = report_dir / "report.html"
    res = CheckResult()
    if not index.is_file():
        res.errors.append(f"{index}: no report.html")
        return res
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium, or set CHROMIUM)")
    browser = DevTools(binary)
    try:
        browser.open(index.as_uri())
        res.errors += [f"report.html: {e}" for e in browser.errors()]
        links = list(dict.fromkeys(browser.evaluate(LINKS_JS)))
        if screenshots is not None:
            res.screenshots.append(_save(screenshots / "index.png", browser.screenshot()))
        pages = [p for p in dict.fromkeys((index.parent / h).resolve() for h in links) if p != index]
        first_prompt = True
        for page in pages:
            if not page.is_file():
                res.errors.append(f"report.html links to {page.relative_to(report_dir)}, which does not exist")
                continue
            browser.open(page.as_uri())
            rel = str(page.relative_to(report_dir))
            res.pages.append(rel)
            if rel.startswith("prompts/") and first_prompt:
                first_prompt = False
                _check_media(browser, res, rel, screenshots)
            elif rel == "ranked.html" and screenshots is not None:
                res.screenshots.append(_save(screenshots / "ranked.png", browser.screenshot()))
            res.errors += [f"{rel}: {e}" for e in browser.errors()]
    finally:
        browser.close()
    return res


def _check_media(browser: DevTools, res: CheckResult, rel: str, screenshots: Optional[Path]) -> None:
    view = browser.evaluate(VIEWER_JS % int(PAGE_TIMEOUT_S * 1000))
    if view is None:
        res.errors.append(f"{rel}: no 3D viewer on the page")
    elif view["state"] != "ready":
        res.errors.append(f"{rel}: 3D viewer not ready ({view['state']}): {view['note']}")
    else:
        time.sleep(VIEWER_SETTLE_S)
        # clip is in document coordinates (the viewport does not matter)
        clip = {"x": view["x"], "y": view["y"], "width": view["width"], "height": view["height"]}
        png = browser.screenshot(clip=clip)
        res.canvas = canvas_stats(png)
        if res.canvas["colours"] < 8 or res.canvas["spread"] < 24:
            res.errors.append(f"{rel}: the 3D viewer's canvas looks blank ({res.canvas})")
        if screenshots is not None:
            res.screenshots.append(_save(screenshots / "viewer.png", png))
    res.video = browser.evaluate(VIDEO_JS)
    if res.video is None:
        res.errors.append(f"{rel}: no video element")
    elif res.video.get("error") or not (res.video.get("after", 0) > res.video.get("before", 0) or res.video.get("ended")):
        res.errors.append(f"{rel}: the turntable video does not play ({res.video})")
    if screenshots is not None:
        browser.evaluate("window.scrollTo(0, 0)")
        res.screenshots.append(_save(screenshots / "prompt.png", browser.screenshot()))


def _save(path: Path, png: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)
    return path


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.browser.check", description=__doc__.split("\n")[0])
    p.add_argument("report", type=Path, help="a report folder (RESULTS/<job>/, with report.html)")
    p.add_argument("--screenshots", type=Path, default=None, help="write index.png, prompt.png, viewer.png, ranked.png here")
    args = p.parse_args(argv)
    try:
        res = check_report(args.report, args.screenshots)
    except FileNotFoundError as e:
        return report_error(e)
    print(f"pages loaded: {len(res.pages) + 1}; canvas: {res.canvas}; video: {res.video}")
    for e in res.errors:
        print(f"FAIL {e}")
    for s in res.screenshots:
        print(f"screenshot: {s}")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
