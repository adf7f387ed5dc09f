"""The docs quote reports, they do not retype them: every "mean [low, high]" interval in docs/ and
the README must appear, digit for digit, in a committed report (results/**/*.md). A table edited
by hand, or left behind when its report was rebuilt with more runs, fails here."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = re.compile(r"[-+]?\d+\.\d+ \[[-+]?\d+\.\d+, [-+]?\d+\.\d+\]")
DOCS = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]


@pytest.fixture(scope="module")
def reports_text() -> str:
    """Every committed report, read once for all the docs."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "results").rglob("*.md")))


def unquoted_intervals(doc_text: str, reports_text: str) -> list[str]:
    """The intervals of `doc_text` that no report holds (a leading '+' may be the doc's own)."""
    return [t for t in INTERVAL.findall(doc_text) if t not in reports_text and t.lstrip("+") not in reports_text]


def test_the_check_finds_a_retyped_interval():
    report = "| sds | 81.4 [75.2, 87.1] | +27.1 [+8.2, +47.9] |"
    assert unquoted_intervals("SDS: 81.4 [75.2, 87.1], +27.1 [+8.2, +47.9]", report) == []
    assert unquoted_intervals("SDS: 81.4 [75.2, 87.2]", report) == ["81.4 [75.2, 87.2]"]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_interval_in_the_docs_is_in_a_committed_report(doc, reports_text):
    missing = unquoted_intervals(doc.read_text(encoding="utf-8"), reports_text)
    assert not missing, (f"{doc.relative_to(ROOT)} quotes intervals no committed report holds (rebuild the "
                         f"report and copy its rows): {missing[:10]}")
