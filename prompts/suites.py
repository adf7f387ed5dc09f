"""Load prompt suites.

A suite is a named, ordered list of `PromptEntry(category, index, prompt)`, where `index` is the
0-based line of the prompt in its category file (T3Bench's own order). Names:

  t3bench                      all 300 T3Bench prompts (single, surr, multi)
  t3bench-single / -surr / -multi
  demo                         the first prompt of each T3Bench category (3 prompts)
  toybench                     ToyWorld captions for the `toy` model set: all 16 one-object and
                               24 two-object captions (one_object, two_objects)
  toybench-one / -two          one category of it
  toybench-demo                2 + 2 of them (`make demo`)
  toybench-dev                 the development split: 16 two-object captions whose object sets are
                               not in the test suite (every one-object caption is in it), for tuning
  <path to a .txt file>        one prompt per line, category = the file's stem

Prompt files are strict: UTF-8, one prompt per line, no blank or duplicate lines, at most
MAX_PROMPT_CHARS characters a line. A bad file raises PromptFileError naming the file and line.
Lines end at "\n" (or "\r\n") only, as editors count them: a form feed, NEL (U+0085) or U+2028
inside a line is not a line break but a hidden character, and prompts with hidden characters
(controls, bidi overrides and isolates, zero-width spaces and joiners: `prompt_problem`) are
refused, not stripped: the file would then mean something other than what its reader sees, and
two files that look alike would plan different runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from generators.errors import UserError
from generators.untrusted import hidden_characters

PROMPTS_DIR = Path(__file__).resolve().parent
T3BENCH_CATEGORIES = ("single", "surr", "multi")
TOYBENCH_CATEGORIES = {"one": "one_object", "two": "two_objects"}
# two of each category, chosen to cover every shape and colour once between them
TOYBENCH_DEMO = ("a red cube", "a blue sphere", "a yellow cube and a blue sphere", "a red torus and a blue cone")
TOYBENCH_DEV = "dev_two_objects"  # prompts/toybench/dev_two_objects.txt: tuning only, never reported as results
MAX_PROMPT_CHARS = 300  # T3Bench's longest is under 100; anything near this is a mistake


class PromptFileError(UserError):
    """A prompt file that cannot be used as a suite."""


def prompt_problem(prompt: str) -> str | None:
    """Why `prompt` cannot be a prompt (length, hidden characters), or None. Shared by prompt files
    and `python -m generators run --prompt`."""
    if len(prompt) > MAX_PROMPT_CHARS:
        return f"prompt of {len(prompt)} characters (at most {MAX_PROMPT_CHARS})"
    hidden = hidden_characters(prompt)
    if hidden:
        column, what = hidden[0]
        return (f"{what} at character {column}: control and invisible characters (bidi overrides, "
                f"zero-width spaces) are not allowed in prompts")
    return None


@dataclass(frozen=True)
class PromptEntry:
    category: str
    index: int
    prompt: str


def load_prompt_file(path: str | Path, category: str | None = None) -> list[PromptEntry]:
    """Read and validate one prompt file."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"{path}: prompt file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PromptFileError(f"{path}:{line}: not valid UTF-8 (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")  # "\n" only: str.splitlines also breaks at \f, \x85, U+2028, ...
    if lines[-1] == "":  # the final line end
        lines.pop()
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if not any(line.strip() for line in lines):
        raise PromptFileError(f"{path}: the file has no prompts")
    category = category or path.stem
    seen: dict[str, int] = {}
    entries = []
    for number, line in enumerate(lines, start=1):
        problem = prompt_problem(line)  # before strip(), which would drop a trailing \x85 or U+2028 unseen
        if problem:
            raise PromptFileError(f"{path}:{number}: {problem}")
        prompt = line.strip()
        if not prompt:
            raise PromptFileError(f"{path}:{number}: blank line (one prompt per line, no blank lines)")
        if prompt in seen:
            raise PromptFileError(f"{path}:{number}: duplicate of line {seen[prompt]}: {prompt!r}")
        seen[prompt] = number
        entries.append(PromptEntry(category, number - 1, prompt))
    return entries


def _t3bench(category: str) -> list[PromptEntry]:
    return load_prompt_file(PROMPTS_DIR / "t3bench" / f"{category}.txt", category)


def _toybench(category: str) -> list[PromptEntry]:
    return load_prompt_file(PROMPTS_DIR / "toybench" / f"{category}.txt", category)


def list_suites() -> list[str]:
    return ["t3bench", *(f"t3bench-{c}" for c in T3BENCH_CATEGORIES), "demo",
            "toybench", *(f"toybench-{c}" for c in TOYBENCH_CATEGORIES), "toybench-demo", "toybench-dev"]


def load_suite(name: str) -> list[PromptEntry]:
    """A suite by name, or a prompt file by path."""
    if name == "t3bench":
        return [e for c in T3BENCH_CATEGORIES for e in _t3bench(c)]
    if name.startswith("t3bench-") and name[len("t3bench-"):] in T3BENCH_CATEGORIES:
        return _t3bench(name[len("t3bench-"):])
    if name == "demo":
        return [_t3bench(c)[0] for c in T3BENCH_CATEGORIES]
    if name == "toybench":
        return [e for c in TOYBENCH_CATEGORIES.values() for e in _toybench(c)]
    if name.startswith("toybench-") and name[len("toybench-"):] in TOYBENCH_CATEGORIES:
        return _toybench(TOYBENCH_CATEGORIES[name[len("toybench-"):]])
    if name == "toybench-dev":
        return _toybench(TOYBENCH_DEV)
    if name == "toybench-demo":
        return [e for c in TOYBENCH_CATEGORIES.values() for e in _toybench(c) if e.prompt in TOYBENCH_DEMO]
    path = Path(name)
    if path.suffix == ".txt" or path.exists():
        return load_prompt_file(path)
    raise PromptFileError(
        f"unknown prompt suite {name!r}: use one of {', '.join(list_suites())} or a path to a .txt file"
    )
