"""Settings as run: what each label of a report was made with, read from its runs' config.yaml.

A label is the name a job gives a group of runs ("sds", "sds-cfg-tuned"). What it stands for is
the settings its runs resolved to, and those depend on the model set's defaults on the day they
ran: `sds` in a job of last month may be another CFG than `sds` today. So a report records each
run's settings (scores.parquet, column `settings`) and shows, per label, its CFG and what sets it
apart from the other labels of its method; it warns when one label's runs disagree among
themselves (two settings under one name: a mislabelled cell).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from harness.report_tables import md_table

PER_RUN_KEYS = ("prompt", "seed")  # differ inside a label by design
CFG_KEY = "guidance.guidance_scale"
MAX_KEYS_SHOWN = 6
_ABSENT = "(unset)"


def run_settings(config: Any, resolved: Any = None) -> Optional[dict[str, str]]:
    """The result-changing settings of a run's config.yaml (plus its step budget), flattened to
    dotted keys with JSON values, and the weights each model component resolved to (status.json's
    `models_resolved`: `weights.<component>` = id@commit, so runs of a hub revision such as `main`
    made before and after it moved do not pass for one setting); None when the config is not a
    mapping."""
    from generators.config import hashed_settings

    if not isinstance(config, dict):
        return None
    kept = {k: v for k, v in hashed_settings(config).items() if k not in PER_RUN_KEYS}
    if "steps" in config:
        kept["steps"] = config["steps"]
    if isinstance(resolved, dict):  # the folder path is left out: it names the machine, not the weights
        kept["weights"] = {name: f"{r.get('id') or 'local'}@{r.get('revision')}"
                           for name, r in sorted(resolved.items()) if isinstance(r, dict)}
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat[prefix] = json.dumps(value, sort_keys=True, default=str)

    walk("", kept)
    return flat


def _shown(value: str) -> str:
    try:
        decoded = json.loads(value)
    except (TypeError, ValueError):
        return str(value)
    return decoded if isinstance(decoded, str) else json.dumps(decoded)


def _describe(keys: list[str], values: dict[str, set]) -> str:
    parts = [f"`{k}` {' / '.join(sorted(_shown(x) for x in values[k]))}" for k in keys[:MAX_KEYS_SHOWN]]
    if len(keys) > MAX_KEYS_SHOWN:
        parts.append(f"and {len(keys) - MAX_KEYS_SHOWN} more")
    return "; ".join(parts)


@dataclass
class LabelSettings:
    """The recorded settings of a report's runs, grouped by label (in the job's order)."""

    values: dict[str, dict[str, set]]  # label -> setting -> the values its runs had
    method_of: dict[str, str]
    counts: dict[str, int]  # label -> runs with recorded settings
    unrecorded: set  # labels with runs whose settings are not in the scores

    @classmethod
    def of(cls, rows: Iterable[dict]) -> "LabelSettings":
        runs: dict[str, list[dict]] = {}
        method_of: dict[str, str] = {}
        unrecorded: set = set()
        for r in rows:
            if not r.get("run_state"):
                continue  # never started: no settings to show
            label = str(r["label"])
            method_of[label] = str(r.get("method"))
            text = r.get("settings")
            if not isinstance(text, str) or not text:
                unrecorded.add(label)
                continue
            runs.setdefault(label, []).append(json.loads(text))
        values = {label: {k: {s.get(k, _ABSENT) for s in settings} for k in set().union(*settings)}
                  for label, settings in runs.items()}
        return cls(values, method_of, {lb: len(s) for lb, s in runs.items()}, unrecorded)

    def mixed(self) -> dict[str, list[str]]:
        """label -> the settings its runs disagree on (prompt and seed aside); empty when none do."""
        return {lb: sorted(k for k, vs in v.items() if len(vs) > 1) for lb, v in self.values.items()
                if any(len(vs) > 1 for vs in v.values())}

    def table(self) -> list[list[str]]:
        """One row per label: label, method, runs, CFG, and the settings that set it apart from its
        method's other labels. Empty when no run's settings are recorded."""
        methods = list(dict.fromkeys(self.method_of[lb] for lb in self.values))  # the job's order
        body = []
        for label in sorted(self.values, key=lambda lb: methods.index(self.method_of[lb])):  # stable sort
            mine = self.values[label]
            siblings = [lb for lb in self.values if self.method_of[lb] == self.method_of[label] and lb != label]
            apart = sorted(k for k in set(mine).union(*(self.values[s] for s in siblings))
                           if any(mine.get(k, {_ABSENT}) != self.values[s].get(k, {_ABSENT}) for s in siblings))
            cfg = " / ".join(sorted(_shown(x) for x in mine.get(CFG_KEY, {_ABSENT})))
            body.append([label, self.method_of[label], str(self.counts[label]), cfg,
                         _describe(apart, {k: mine.get(k, {_ABSENT}) for k in apart}) if apart else "—"])
        return body


SETTINGS_HEADER = ["Label", "Method", "Runs", "CFG", "Apart from the method's other labels"]


def settings_section(settings: LabelSettings) -> list[str]:
    """The report's "Settings as run" section, as Markdown lines."""
    lines = ["## Settings as run", ""]
    body = settings.table()
    if not body:
        return lines + ["Not in these scores (collected before runs' settings were recorded): rebuild the "
                        "report from the run folders to see them.", ""]
    lines += ["Read from each run's config.yaml: the CFG, and the settings in which a label differs from the "
              "other labels of its method (prompt and seed aside).", "", md_table(SETTINGS_HEADER, body), ""]
    for label, keys in settings.mixed().items():
        lines.append(f"- **Mixed settings:** the runs of `{label}` differ in "
                     f"{_describe(keys, settings.values[label])}; its cells pool different settings.")
    if settings.unrecorded:
        lines.append(f"- Not recorded for some runs of {', '.join(f'`{lb}`' for lb in sorted(settings.unrecorded))} "
                     "(scores collected before settings were recorded).")
    return lines + [""]
