"""Reading text a user or a file handed us: bounded YAML, short reprs, hidden characters.

    data = safe_load(text)            # yaml.safe_load, bounded; YAML 1.2 floats (1e38 is a float)
    f"got {brief(value)}"             # a repr that stays short whatever the value
    hidden_characters("a\u202eb")     # [(1, 'U+202E RIGHT-TO-LEFT OVERRIDE')]

`safe_load` refuses, with a yaml.YAMLError (every caller already turns those into a clear message),
documents larger than MAX_DOCUMENT_CHARS, with more than MAX_ALIASES aliases, nested deeper than
MAX_DEPTH, or that expand (aliases followed) to more than MAX_EXPANDED_NODES nodes: an alias bomb
("billion laughs") is a few hundred bytes that expand to billions of nodes, which `dataclasses.asdict`,
`repr` or a deep merge then walk one by one. Real job files, presets and model sets are far below
every bound.
"""

from __future__ import annotations

import re
import reprlib
import unicodedata
from typing import Any

import yaml

MAX_DOCUMENT_CHARS = 1_000_000  # the largest file we read (a run's config.yaml) is ~5 KB
MAX_ALIASES = 100
MAX_DEPTH = 32  # RunConfig nests 4 deep; a schedule adds 3
MAX_EXPANDED_NODES = 100_000  # a job file with every setting of every run group is ~1000


class YamlBoundError(yaml.YAMLError):
    """A YAML document over one of the bounds (size, aliases, depth, expanded size)."""


# YAML 1.2 reads 1e38 and 1.0e5 as floats; PyYAML (YAML 1.1) wants a '.' and a signed exponent
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class BoundedSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that counts aliases and depth while composing, and the expanded size after."""

    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlBoundError(f"more than {MAX_ALIASES} aliases ('*name'): refused")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlBoundError(f"nested deeper than {MAX_DEPTH} levels: refused")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return self.construct_document(node)


BoundedSafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def _check_expansion(root: yaml.Node) -> None:
    """Raise when the document, every alias followed, has too many nodes or is too deep (or cyclic)."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    busy: set[int] = set()

    def measure(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise YamlBoundError("a node contains itself through an alias: refused")
        busy.add(key)
        children: list = []
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        count, depth = 1, 0
        for child in children:
            c, d = measure(child)
            count += c
            depth = max(depth, d)
            if count > MAX_EXPANDED_NODES:
                raise YamlBoundError(f"expands to more than {MAX_EXPANDED_NODES} nodes (aliases followed): refused")
        if depth + 1 > MAX_DEPTH:
            raise YamlBoundError(f"nested deeper than {MAX_DEPTH} levels (aliases followed): refused")
        busy.discard(key)
        sizes[key] = (count, depth + 1)
        return sizes[key]

    measure(root)


def safe_load(text: str | bytes) -> Any:
    """yaml.safe_load within the bounds above; a yaml.YAMLError (YamlBoundError) past them."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise YamlBoundError(f"document of {len(text)} characters, more than {MAX_DOCUMENT_CHARS}: refused")
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 80
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 8
_BRIEF.maxlevel = 3


def brief(value: Any) -> str:
    """repr(value), cut short: error messages quote what they got without echoing a whole document."""
    return _BRIEF.repr(value)


# Unicode categories of characters that do not show as themselves: C0/C1 controls (tab, form feed,
# NEL), format characters (bidi overrides and isolates, zero-width space/joiners, soft hyphen,
# BOM) and the line/paragraph separators U+2028/U+2029.
HIDDEN_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


def hidden_characters(text: str) -> list[tuple[int, str]]:
    """(1-based column, 'U+XXXX NAME') of each character of `text` that does not show as itself."""
    return [(i, f"U+{ord(c):04X} {unicodedata.name(c, 'control character')}")
            for i, c in enumerate(text, start=1) if unicodedata.category(c) in HIDDEN_CATEGORIES]


def path_problem(text: str) -> str | None:
    """Why `text` cannot name a folder a command writes into, or None: empty, or a control or
    invisible character in it (a folder shown as `run<U+202E>gpj.exe` is not the folder it looks like)."""
    if not text.strip():
        return "an empty path"
    hidden = hidden_characters(text)
    if hidden:
        return (f"{hidden[0][1]} at character {hidden[0][0]} of {brief(text)}: control and invisible "
                f"characters are not allowed in paths")
    return None


def path_argument(text: str):
    """argparse `type=` for such a folder (argparse turns the refusal into exit code 2)."""
    import argparse
    from pathlib import Path

    problem = path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)
