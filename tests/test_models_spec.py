"""Model-set files: the shipped sets, strict parsing, and the `make weights` plan."""

from __future__ import annotations

import pytest

from generators.config import config_from_dict
from generators.errors import UserError
from generators.models import weights
from generators.models.loader import load_models
from generators.models.spec import load_set_spec


def test_sd15_names_the_anchords_networks():
    s = load_set_spec("sd15")
    assert s.base.id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert (s.ip_adapter.id, s.ip_adapter.subfolder, s.ip_adapter.weight_name, s.ip_adapter.image_encoder) == (
        "h94/IP-Adapter", "models", "ip-adapter-plus_sd15.safetensors", "models/image_encoder")
    assert s.controlnet.id == "lllyasviel/control_v11p_sd15_normalbae"
    assert s.shap_e.id == "openai/shap-e"
    assert (s.vae_input_size, s.finetune_layer, s.codec.kind) == (512, "up_blocks.3", "vae")


def test_sd21_has_no_ip_adapter():
    s = load_set_spec("sd21")
    assert s.base.id == "stabilityai/stable-diffusion-2-1-base"
    assert s.controlnet.id == "thibaud/controlnet-sd21-normalbae-diffusers"
    assert s.ip_adapter is None
    with pytest.raises(UserError, match="has no 'ip_adapter'"):
        load_models("sd21", {"ip_adapter"}, "cpu")


def test_tiny_run_defaults_are_a_valid_cpu_sized_run_config():
    s = load_set_spec("tiny")
    cfg = config_from_dict(s.run_defaults)
    assert (cfg.camera.width, cfg.guidance.vae_input_size, cfg.views.turntable_frames) == (64, 64, 24)
    assert cfg.init.shap_e.num_inference_steps == 2
    assert s.embedded == "generators.models.tiny:ensure_tiny_set"


def _write(tmp_path, text):
    p = tmp_path / "bad_set.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, key",
    [
        ("base: {id: a/b}\nbogus: 1\n", "bogus"),
        ("base: {id: a/b, revison: main}\n", "base.revison"),
        ("base: {id: a/b}\ncodec: {kind: vae, factr: 2}\n", "codec.factr"),
        ("base: {id: a/b}\nrun_defaults: {camera: {widht: 64}}\n", "widht"),
    ],
)
def test_unknown_keys_fail_naming_file_and_key(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(UserError) as info:
        load_set_spec(path)
    assert str(path) in str(info.value) and key in str(info.value)


def test_other_bad_sets(tmp_path):
    with pytest.raises(UserError, match="needs a 'base'"):
        load_set_spec(_write(tmp_path, "name: x\n"))
    with pytest.raises(UserError, match="codec.kind"):
        load_set_spec(_write(tmp_path, "base: {id: a/b}\ncodec: {kind: jpeg}\n"))
    with pytest.raises(UserError, match="weight_name"):
        load_set_spec(_write(tmp_path, "base: {id: a/b}\nip_adapter: {id: h94/IP-Adapter}\n"))
    with pytest.raises(UserError, match="sd15, sd15-random, sd21"):
        load_set_spec("no-such-set")


def test_relative_paths_resolve_against_the_yaml_folder(tmp_path):
    path = _write(tmp_path, "base: {path: nowhere}\ncodec: {kind: pixel-unshuffle, factor: 2}\n")
    with pytest.raises(UserError, match=str(tmp_path / "nowhere")):
        load_models(path, {"base"}, "cpu")


def test_weights_plan_prefers_fp16_and_falls_back():
    spec = load_set_spec("sd15")
    fetches = {f.component: f for f in weights.plan(spec)}
    assert set(fetches) == {"base", "ip_adapter", "controlnet", "shap_e"}
    base = fetches["base"]
    repo = {
        "model_index.json": 1, "scheduler/scheduler_config.json": 1, "tokenizer/vocab.json": 1,
        "tokenizer/merges.txt": 1, "text_encoder/config.json": 1, "text_encoder/model.safetensors": 9,
        "text_encoder/model.fp16.safetensors": 5, "unet/config.json": 1, "unet/diffusion_pytorch_model.bin": 9,
        "vae/config.json": 1, "vae/diffusion_pytorch_model.safetensors": 9, "safety_checker/model.safetensors": 9,
    }
    files = weights.choose_files(base, repo)
    assert "text_encoder/model.fp16.safetensors" in files and "text_encoder/model.safetensors" not in files
    assert "unet/diffusion_pytorch_model.bin" in files
    assert "vae/diffusion_pytorch_model.safetensors" in files
    assert not any(f.startswith("safety_checker") for f in files)
    ip = weights.choose_files(fetches["ip_adapter"], {
        "models/ip-adapter-plus_sd15.safetensors": 1, "models/ip-adapter_sd15.safetensors": 1,
        "models/image_encoder/config.json": 1, "models/image_encoder/model.safetensors": 1})
    assert ip == ["models/image_encoder/config.json", "models/image_encoder/model.safetensors", "models/ip-adapter-plus_sd15.safetensors"]
    del repo["unet/diffusion_pytorch_model.bin"]
    with pytest.raises(UserError, match="unet"):
        weights.choose_files(base, repo)


def test_weights_cli_dry_run_and_unknown_set(capsys):
    assert weights.main(["sd21", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "stabilityai/stable-diffusion-2-1-base" in out and "h94/IP-Adapter" not in out
    assert weights.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert "sd15" in err and "sd21" in err


def test_method_run_defaults_tune_one_method_and_its_descendants(tmp_path):
    from generators.methods import resolve_run_config

    toy = {m: resolve_run_config(m, prompt="a red cube", models="toy")
           for m in ("sds", "vsd", "sds-bridge", "anchords-ipa-finetune", "anchords-ipa-finetune-released")}
    spec = load_set_spec("toy")  # the tuned values live in the set file; the test checks who gets which
    assert toy["sds"].guidance.guidance_scale == spec.run_defaults["guidance"]["guidance_scale"]
    assert toy["sds-bridge"].guidance.guidance_scale == spec.run_defaults["guidance"]["guidance_scale"]
    assert toy["vsd"].guidance.guidance_scale == spec.method_run_defaults["vsd"]["guidance"]["guidance_scale"]
    finetune = spec.method_run_defaults.get("anchords-ipa-finetune") or spec.method_run_defaults["anchords-ipa"]
    assert toy["anchords-ipa-finetune"].guidance.guidance_scale == finetune["guidance"]["guidance_scale"]
    assert (toy["anchords-ipa-finetune-released"].guidance.guidance_scale  # no entry of its own: its parent's
            == finetune["guidance"]["guidance_scale"])
    assert toy["sds-bridge"].guidance.source.bridge.stage_two_start_step == 320
    assert toy["sds"].guidance.source.bridge.stage_two_start_step != 320
    base = (tmp_path / "base").as_posix()
    f = tmp_path / "set.yaml"
    f.write_text(f"base: {{path: {base}}}\nrun_defaults: {{steps: 7}}\n"
                 "method_run_defaults: {anchords-ipa: {guidance: {guidance_scale: 12.0}}}\n")
    child = resolve_run_config("anchords-ipa-filter", models=str(f))  # extends anchords-ipa
    assert (child.guidance.guidance_scale, child.steps) == (12.0, 7)
    assert resolve_run_config("sds", models=str(f)).guidance.guidance_scale == 100.0
    assert resolve_run_config("anchords-ipa-filter", models=str(f),
                              overrides={"guidance": {"guidance_scale": 3.0}}).guidance.guidance_scale == 3.0
    f.write_text(f"base: {{path: {base}}}\nmethod_run_defaults: {{sdss: {{steps: 3}}}}\n")
    with pytest.raises(UserError, match="unknown method"):
        resolve_run_config("sds", models=str(f))
    f.write_text(f"base: {{path: {base}}}\nmethod_run_defaults: {{sds: {{stepz: 3}}}}\n")
    with pytest.raises(UserError, match="stepz"):
        load_set_spec(str(f))


def test_every_shipped_set_loads_and_names_only_allowed_builders():
    """A set file added beside the others must pass the same checks (its builder on the allow-list)."""
    from pathlib import Path

    from generators.models.spec import EMBEDDED_BUILDERS

    sets = sorted((Path(__file__).resolve().parents[1] / "generators" / "models" / "sets").glob("*.yaml"))
    assert len(sets) >= 6
    for path in sets:
        spec = load_set_spec(path.stem)
        assert spec.embedded is None or spec.embedded in EMBEDDED_BUILDERS, path.name
