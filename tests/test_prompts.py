import hashlib

import pytest

from prompts import PromptFileError, load_prompt_file, load_suite
from prompts.suites import PROMPTS_DIR

HASHES = {
    "single": "f396c0c12278340858e85c95258ecb6d39eca966ee34cab569a8ae56a414a6f6",
    "surr": "2af27b4fbc59bfd3f36b2dca19fab60ad68f37b88b28e57746b91314c00d0926",
    "multi": "712af8080c29b425ee3d992976e77ca21ac60979ec160e2ba0b662aa503e2173",
}


@pytest.mark.parametrize("category", sorted(HASHES))
def test_t3bench_files_are_the_published_ones(category):
    data = (PROMPTS_DIR / "t3bench" / f"{category}.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HASHES[category]


def test_t3bench_suite_has_300_prompts_in_order():
    suite = load_suite("t3bench")
    assert len(suite) == 300
    assert [e.category for e in suite[::100]] == ["single", "surr", "multi"]
    assert suite[0].prompt == "A cactus with pink flowers" and suite[0].index == 0
    assert suite[32].prompt.count("\u2019") == 1  # kept as shipped
    assert load_suite("t3bench-multi")[99].index == 99
    assert [e.category for e in load_suite("demo")] == ["single", "surr", "multi"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no prompts"),
        (b"a cat\n\na dog\n", ":2: blank line"),
        (b"a cat\na dog\na cat\n", ":3: duplicate of line 1"),
        (b"a cat\n" + b"x" * 301 + b"\n", ":2: prompt of 301 characters"),
        (b"a cat\na \xff dog\n", ":2: not valid UTF-8"),
    ],
)
def test_bad_prompt_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "mine.txt"
    path.write_bytes(content)
    with pytest.raises(PromptFileError, match=message) as info:
        load_prompt_file(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


def test_missing_file_and_unknown_suite(tmp_path):
    with pytest.raises(PromptFileError, match="not found"):
        load_suite(str(tmp_path / "nope.txt"))
    with pytest.raises(PromptFileError, match="unknown prompt suite"):
        load_suite("t3bench-everything")


def test_custom_file_category_is_its_stem(tmp_path):
    path = tmp_path / "fruit.txt"
    path.write_text("a red apple\na green pear\n", encoding="utf-8")
    entries = load_prompt_file(path)
    assert [(e.category, e.index, e.prompt) for e in entries] == [("fruit", 0, "a red apple"), ("fruit", 1, "a green pear")]
