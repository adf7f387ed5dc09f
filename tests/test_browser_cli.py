"""Smaller things users asked for: overrides through make (SET=...) and as bare KEY=VALUE,
--retry-failed for benchmark and eval, a description in every subcommand's --help, and
--print-config without torch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300, **kw)


def _run_ids(out: str) -> list[str]:
    return re.findall(r"next: (runs/\S+)", out)


def _make(*assignments: str, results: Path) -> subprocess.CompletedProcess:
    # STAMP=/dev/null: the venv is there already (never reinstall it from a test)
    return _run(["make", "-s", "benchmark", "JOB=jobs/smoke.yaml", "DRY_RUN=1", f"RESULTS={results}",
                 f"PY={sys.executable}", "STAMP=/dev/null", *assignments])


@pytest.mark.skipif(subprocess.run(["which", "make"], capture_output=True).returncode != 0, reason="no make")
def test_make_benchmark_passes_set_through_the_environment(tmp_path):
    plain = _make(results=tmp_path)
    with_set = _make("SET=steps=3 guidance.guidance_scale=7", "RETRY_FAILED=1", results=tmp_path)
    direct = _run([sys.executable, "-m", "harness", "benchmark", "--job", "jobs/smoke.yaml", "--dry-run",
                   "--results", str(tmp_path), "--set", "steps=3", "guidance.guidance_scale=7"])
    assert plain.returncode == with_set.returncode == direct.returncode == 0, with_set.stderr
    assert _run_ids(with_set.stdout) and _run_ids(with_set.stdout) != _run_ids(plain.stdout)  # overrides change the run id
    assert _run_ids(with_set.stdout) == _run_ids(direct.stdout)
    # shell syntax in SET is data, never run: it arrives as one (bad) override and exits 2
    marker = tmp_path / "pwned"
    evil = _make(f"SET=steps=3 $(touch {marker}) `touch {marker}`; touch {marker}", results=tmp_path)
    assert evil.returncode != 0 and "not an override" in evil.stderr
    assert not marker.exists()


def test_bare_overrides_anywhere_and_print_config_without_torch():
    code = ("import sys; from generators.cli import main; "
            "rc = main(['run', '--method', 'sds', 'steps=7', '--prompt', 'a red apple', 'guidance.guidance_scale=50', "
            "'--print-config']); print('torch loaded:', 'torch' in sys.modules); sys.exit(rc)")
    r = _run([sys.executable, "-c", code])
    assert r.returncode == 0, r.stderr
    assert re.search(r"^steps: 7$", r.stdout, re.M) and re.search(r"^  guidance_scale: 50\.0$", r.stdout, re.M)
    assert "torch loaded: False" in r.stdout
    bad = _run([sys.executable, "-m", "generators", "run", "--method", "sds", "--prompt", "x", "nonsense"])
    assert bad.returncode == 2 and "nonsense" in bad.stderr
    no_out = _run([sys.executable, "-m", "generators", "run", "--method", "sds", "--prompt", "x"])
    assert no_out.returncode == 2 and "--out is required" in no_out.stderr


def test_eval_accepts_bare_overrides_sets_and_retry_failed():
    from generators.cli import parse_args_with_overrides
    from harness.cli import _all_overrides, _parser

    args = parse_args_with_overrides(_parser(), ["eval", "J", "a.b=1", "--models", "tiny", "--retry-failed",
                                                 "--sets", "c.d=2 'e.f=x y'", "g.h=3"])
    assert args.retry_failed and _all_overrides(args) == ["c.d=2", "e.f=x y", "a.b=1", "g.h=3"]


@pytest.mark.parametrize("module, commands", [("harness", ["benchmark", "status", "eval", "report", "demo"]),
                                              ("generators", ["run", "methods"]), ("metrics", ["eval", "weights"])])
def test_every_subcommand_help_has_a_description(module, commands):
    for command in commands:
        r = _run([sys.executable, "-m", module, command, "--help"])
        assert r.returncode == 0, r.stderr
        # argparse prints the description as the paragraph between the usage and the arguments
        paragraphs = [p for p in r.stdout.split("\n\n") if p.strip()]
        assert len(paragraphs) >= 3 and not paragraphs[1].lstrip().startswith(("positional", "options")), \
            f"{module} {command} --help has no description:\n{r.stdout}"
