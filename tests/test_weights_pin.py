"""Pinned local weights (generators/models/fingerprint.py): a set whose folders were replaced
without a new version fails to load, and a new version gives every run a new id."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from generators.errors import UserError
from generators.methods import resolve_run_config
from generators.models.fingerprint import weights_sha256
from generators.models.loader import check_weights_pin, load_models, local_folders
from generators.models.spec import SETS_DIR, load_set_spec
from harness.run_ids import run_id

REPO = Path(__file__).resolve().parents[1]
TOY_WEIGHTS = REPO / "generators" / "models" / "toy" / "weights"


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # tensor data, not the safetensors header: the file still loads
    path.write_bytes(bytes(data))


def _toy_copy(tmp_path: Path, version: str | None, pin: str | None) -> tuple[Path, Path]:
    """A copy of the toy set's weights and a set file naming it (same keys as toy.yaml)."""
    folder = tmp_path / "weights"
    shutil.copytree(TOY_WEIGHTS, folder)
    text = (SETS_DIR / "toy.yaml").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith(("weights_sha256:", "version:", "base:"))]
    lines = [ln.replace("path: ../toy/weights", f"path: {folder}") for ln in lines]
    head = [f"base: {{path: {folder}}}"] + ([f"version: {version}"] if version else []) + ([f"weights_sha256: {pin}"] if pin else [])
    set_file = tmp_path / "toy-copy.yaml"
    set_file.write_text("\n".join(head + lines) + "\n", encoding="utf-8")
    return folder, set_file


def test_fingerprint_covers_weight_bytes_not_their_location_or_notes(tmp_path):
    a = tmp_path / "a"
    shutil.copytree(TOY_WEIGHTS / "ip_adapter", a / "ip_adapter")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert weights_sha256([a]) == weights_sha256([b]) == weights_sha256([b, b / "ip_adapter"])
    (b / "notes.json").write_text("{}")  # not a weight file
    assert weights_sha256([b]) == weights_sha256([a])
    _flip_last_byte(next((b / "ip_adapter").glob("*.safetensors")))
    assert weights_sha256([b]) != weights_sha256([a])
    with pytest.raises(UserError, match="no weight files"):
        weights_sha256([tmp_path / "empty-does-not-exist"])


def test_committed_toy_weights_and_judge_match_their_pins():
    spec = load_set_spec("toy")
    assert spec.weights_sha256 and local_folders(spec) == [TOY_WEIGHTS.resolve()]
    check_weights_pin(spec)  # raises if generators/models/toy/weights was replaced without a new pin

    from metrics.models import check_weights_pin as check_metric_pin, load_set_spec as load_metric_spec

    check_metric_pin(load_metric_spec("toybench"))


def test_replaced_weights_fail_to_load_with_the_fix(tmp_path):
    pin = weights_sha256([TOY_WEIGHTS])
    folder, set_file = _toy_copy(tmp_path, None, pin)
    load_models(str(set_file), {"base"}, "cpu")  # the same weights load
    _flip_last_byte(folder / "unet" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(UserError, match=r"new 'version'.*weights_sha256: [0-9a-f]{64}.*python -m generators.models.fingerprint"):
        load_models(str(set_file), {"base"}, "cpu")


def test_a_new_version_gives_new_run_ids_and_the_old_config_is_refused(tmp_path):
    from generators.train import check_models_version

    folder, old_file = _toy_copy(tmp_path, None, None)
    new_file = tmp_path / "toy-v2.yaml"
    new_file.write_text(old_file.read_text(encoding="utf-8") + "version: prior-step-20000\n", encoding="utf-8")
    old = resolve_run_config("sds", prompt="a red cube", seed=0, models=str(old_file))
    new = resolve_run_config("sds", prompt="a red cube", seed=0, models=str(new_file))
    assert (old.models_version, new.models_version) == ("", "prior-step-20000")
    # same file path would be the real case; here the paths differ too, so compare the version's effect alone
    new_as_old = resolve_run_config("sds", prompt="a red cube", seed=0, models=str(new_file))
    new_as_old.models_version = ""
    assert run_id(new) != run_id(new_as_old)
    with pytest.raises(UserError, match="version 'prior-step-20000'"):
        check_models_version(new_as_old, load_set_spec(str(new_file)))
    check_models_version(new, load_set_spec(str(new_file)))


def test_unversioned_sets_keep_the_run_ids_they_had():
    """An empty models_version hashes as if the field did not exist (the ids runs had before
    versions existed), in both id paths (run_id and the planner's template); a version changes both."""
    from generators.config import UNHASHED_FIELDS, config_to_dict
    from harness.run_ids import RunIdTemplate, run_id_of_dict

    cfg = resolve_run_config("sds", prompt="a red cube", seed=2, models="toy")
    cfg.models_version = ""
    d = config_to_dict(cfg)
    before = {k: v for k, v in d.items() if k != "models_version"}  # the config as it was before the field
    old_hash = hashlib.sha256(json.dumps({k: v for k, v in before.items() if k not in UNHASHED_FIELDS},
                                         sort_keys=True).encode()).hexdigest()[:16]
    steps = d["steps"]
    old_id = "a-red-cube-" + hashlib.sha256(f"{old_hash}|steps={steps}".encode()).hexdigest()[:12]
    assert run_id_of_dict(d) == RunIdTemplate(d).run_id("a red cube", 2) == old_id
    versioned = {**d, "models_version": "prior-step-20000"}
    assert run_id_of_dict(versioned) == RunIdTemplate(versioned).run_id("a red cube", 2) != old_id


def test_bad_pins_are_refused(tmp_path):
    folder, set_file = _toy_copy(tmp_path, None, None)
    text = set_file.read_text(encoding="utf-8")
    for bad, match in [("weights_sha256: abc", "64 lowercase hex"), ("version: a@b", "without '@'"),
                       ("version: 3", "must be a string")]:
        f = tmp_path / "bad.yaml"
        f.write_text(text + bad + "\n", encoding="utf-8")
        with pytest.raises(UserError, match=match):
            load_set_spec(str(f))


def test_repin_gives_the_set_a_unique_version_and_keeps_its_comments(tmp_path):
    from generators.models.fingerprint import repin

    folder, set_file = _toy_copy(tmp_path, None, weights_sha256([TOY_WEIGHTS]))
    body = [ln for ln in set_file.read_text(encoding="utf-8").splitlines() if not ln.startswith("name:")]
    set_file.write_text("# a comment that stays\nname: toy-copy\n" + "\n".join(body) + "\n")
    _flip_last_byte(folder / "unet" / "diffusion_pytorch_model.safetensors")  # "retrained"
    with pytest.raises(UserError, match="weights_sha256"):
        load_models(str(set_file), {"base"}, "cpu")
    version, sha = repin(set_file, "prior-step-9", [folder])
    assert version == f"prior-step-9-{sha[:8]}" and sha == weights_sha256([folder])
    text = set_file.read_text(encoding="utf-8")
    assert text.startswith("# a comment that stays\nname: toy-copy\nversion: ") and text.count("weights_sha256:") == 1
    spec = load_set_spec(str(set_file))
    assert (spec.version, spec.weights_sha256, spec.identity) == (version, sha, f"toy-copy@{version}")
    load_models(str(set_file), {"base"}, "cpu")
    assert resolve_run_config("sds", prompt="a red cube", models=str(set_file)).models_version == version
