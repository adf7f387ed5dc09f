"""Pinning the weights in a set's local folders: `version` + `weights_sha256` in the set's yaml.

    name: toy
    version: prior-step-12000          # part of every run's identity (run id, metric records);
                                       # none: the set's first weights, whose runs keep the ids
                                       # they had before versions existed
    weights_sha256: 3f9c...            # what the local folders must hold; checked at every load

Hub components are named by id + revision, but a local folder (`path:`) is named by its path only,
and its contents can change under it: a retrained prior exported over the committed one. Without a
pin, runs of the new weights would get the ids of the old runs, so the harness would count the old
results as done (mislabelled) or resume their checkpoints with other networks. With a pin, loading a
set whose folders no longer match fails with the fix: give the set a new `version` (new run ids, so
old results are neither reused nor overwritten) and the new `weights_sha256`, which

    python -m generators.models.fingerprint toy             # a generator set
    python -m generators.models.fingerprint toybench --metric

prints. Only weight files count (*.safetensors, *.bin, *.pt, *.pth, *.ckpt): logs and evaluation
notes beside them may change without changing a result.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Iterable

from generators.errors import UserError, report_error

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
_CHUNK = 1 << 20


def weight_files(folders: Iterable[Path]) -> list[Path]:
    """Every weight file under the folders, each once (nested or repeated folders are fine), sorted."""
    found = {p for folder in folders for p in Path(folder).resolve().rglob("*")
             if p.is_file() and p.suffix in WEIGHT_SUFFIXES}
    return sorted(found)


def weights_sha256(folders: Iterable[Path]) -> str:
    """sha256 over (path relative to its outermost folder, size, bytes) of every weight file: the
    same weights give the same hash wherever the set lives."""
    folders = sorted({Path(f).resolve() for f in folders}, key=lambda f: len(f.parts))
    files = weight_files(folders)
    if not files:
        raise UserError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) under {', '.join(map(str, folders))}")
    h = hashlib.sha256()
    for p in files:
        outer = next(f for f in folders if f in p.parents)
        h.update(f"{p.relative_to(outer).as_posix()}\0{p.stat().st_size}\0".encode())
        with p.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def check_pin(what: str, file: Path, declared: str, folders: list[Path], command: str) -> None:
    """UserError unless the folders' weights are the ones `declared` pins (no-op for an empty pin)."""
    if not declared:
        return
    actual = weights_sha256(folders)
    if actual != declared:
        raise UserError(
            f"{what} ({file}): the weights in {', '.join(map(str, folders))} are not the ones its "
            f"'weights_sha256' pins ({declared[:12]}..., now {actual[:12]}...). If they were replaced on purpose, "
            f"give the set a new 'version' (its runs then get new ids: results of the old weights are neither "
            f"reused nor overwritten) and set 'weights_sha256: {actual}' (printed by: {command})")


def identity(name: str, version: str) -> str:
    """How runs and metric records name a set: `toy`, or `toy@prior-step-12000` once versioned."""
    return f"{name}@{version}" if version else name


def parse_pin(file: Path, data: dict) -> tuple[str, str]:
    """(version, weights_sha256) from a set's top-level keys, validated."""
    version = data.get("version", "")
    pin = data.get("weights_sha256", "")
    if not isinstance(version, str) or any(c in version for c in "@/\\ \n"):
        raise UserError(f"{file}: 'version' must be a string without '@', slashes or spaces, got {version!r}")
    if not isinstance(pin, str) or (pin and (len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin))):
        raise UserError(f"{file}: 'weights_sha256' must be 64 lowercase hex digits, got {pin!r}")
    return version, pin


def repin(set_file: Path, version_prefix: str, folders: list[Path]) -> tuple[str, str]:
    """Give a set file the pin of its folders' current weights: `version: <prefix>-<8 hex>` (unique
    per weights, so two exports never share run ids) and `weights_sha256`. Other lines, comments
    included, stay as they are; the two keys replace their old lines or go before `base:`/the first
    section. Returns (version, sha256). For the exporters of the committed toy set and judge."""
    from generators.io import atomic_write_text

    sha = weights_sha256(folders)
    version = f"{version_prefix}-{sha[:8]}"
    lines = Path(set_file).read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if not ln.startswith(("version:", "weights_sha256:"))]
    at = next((i for i, ln in enumerate(kept) if ln and not ln.startswith(("#", "name:", "description:"))), len(kept))
    kept[at:at] = [f"version: {version}", f"weights_sha256: {sha}"]
    atomic_write_text(Path(set_file), "\n".join(kept) + "\n")
    return version, sha


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generators.models.fingerprint", description=__doc__.split("\n\n")[0])
    ap.add_argument("set", help="set name or yaml path")
    ap.add_argument("--metric", action="store_true", help="a metric model set (metrics/model_sets/)")
    args = ap.parse_args(argv)
    try:
        if args.metric:
            from metrics.models import load_set_spec as load_metric_spec, local_folders as metric_folders

            spec = load_metric_spec(args.set)
            folders = metric_folders(spec)
        else:
            from generators.models.loader import local_folders
            from generators.models.spec import load_set_spec

            spec = load_set_spec(args.set)
            folders = local_folders(spec)
        if not folders:
            raise UserError(f"{spec.file}: the set has no local folders ('path:'), so nothing to pin")
        print(f"weights_sha256: {weights_sha256(folders)}")
        for f in folders:
            print(f"# over {f}", file=sys.stderr)
    except UserError as e:
        return report_error(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
