"""Typed configuration of one generation run.

Every constant of a recipe lives here (with the value the recipe uses and where it comes from),
never in a code path. A method is a preset: a YAML file in `generators/methods/` that overrides
some of these fields (see `generators.methods`). Model sets may add CPU-sized defaults
(`generators/models/sets/*.yaml`, key `run_defaults`).

Loading is strict: an unknown key, a wrong type or a value outside a `Literal` raises
`ConfigError` naming the dotted key, so a typo in a job file never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from generators.schedules import ScheduleError, validate_schedule
from generators.untrusted import brief


class ConfigError(ValueError):
    """A user-facing configuration error (unknown key, bad type, bad value)."""


# ----------------------------------------------------------------------------------------------
# Sections


@dataclass
class CameraConfig:
    """Training-camera sampling (GaussianDreamer recipe, gaussiandreamer-recipe.md section 5).

    World frame: z up; azimuth 0 looks at the object from +x ("front view"), azimuth 90 from +y.
    Cameras look at the origin with the world z axis as up.
    """

    batch_size: int = 4
    width: int = 1024  # render size; bilinearly resized to guidance.vae_input_size
    height: int = 1024
    distance_range: tuple[float, float] = (1.5, 4.0)
    elevation_range_deg: tuple[float, float] = (-10.0, 60.0)
    # half the batches uniform in degrees, half "uniform on the sphere", decided per batch:
    # "mixed-threestudio" (GaussianDreamer's threestudio code): the sphere half is
    #   asin(2u - 1), u ~ U[(lo + 90) / 180, (hi + 90) / 180], which covers only
    #   [asin(lo / 90), asin(hi / 90)] = [-6.4, 41.8] degrees for (-10, 60);
    # "mixed": the sphere half exactly uniform on the sphere between lo and hi.
    # "threestudio-sphere" / "uniform-sphere" / "uniform-degrees": one mode for every batch
    elevation_sampling: Literal["mixed-threestudio", "mixed", "uniform-degrees", "uniform-sphere",
                                "threestudio-sphere"] = "mixed-threestudio"
    azimuth_range_deg: tuple[float, float] = (-180.0, 180.0)
    azimuth_stratified: bool = True  # one azimuth per stratum of the batch
    fov_y_range_deg: tuple[float, float] = (40.0, 70.0)
    near: float = 0.01
    far: float = 100.0
    # view-dependent prompting (threestudio order: side, front, back, overhead; the last match wins)
    view_dependent_prompting: bool = True
    front_threshold_deg: float = 45.0
    back_threshold_deg: float = 45.0
    overhead_threshold_deg: float = 60.0
    suffix_front: str = ", front view"
    suffix_side: str = ", side view"
    suffix_back: str = ", back view"
    suffix_overhead: str = ", overhead view"


@dataclass
class ViewsConfig:
    """Output views of a finished run (GaussianDreamer test: 120 views, elevation 15, r 4, fov 70)."""

    turntable_frames: int = 120
    turntable_fps: int = 30
    elevation_deg: float = 15.0
    distance: float = 4.0
    fov_y_deg: float = 70.0
    width: int = 512
    height: int = 512
    grid_views: int = 8  # views in the multi-view PNG grid (evenly spaced azimuths)
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # AnchorDS renders tests on white


@dataclass
class ShapEConfig:
    """Shap-E text-to-3D prior used for initialisation (gaussiandreamer-recipe.md section 1)."""

    guidance_scale: float = 15.0
    num_inference_steps: int = 64
    frame_size: int = 64  # unused for meshes; kept for diffusers' renderer
    mesh_grid_size: int = 128  # marching-cubes grid of the mesh decoder
    # Shap-E mesh frame -> our world frame (z up, front +x), as a 3x3 row-major matrix M,
    # world = M @ shap_e. Shap-E is z-up: its pan cameras (diffusers shap_e/camera.py
    # create_pan_cameras, same in openai/shap-e) orbit the z axis from above (origin z > 0), and
    # the mesh decoder's grid axes are x, y, z of that frame. Its front faces -y: its first pan
    # frame looks from -y, and GaussianDreamer (which keeps Shap-E coordinates as its world) puts
    # its azimuth-0 "front view" camera at -y (pose_spherical(azimuth + 180, ...)). Our front
    # camera sits at +x, so Shap-E -y -> +x, z -> z, and (right-handed) x -> +y: a +90 degree
    # rotation about z, (x, y, z) -> (-y, x, z).
    axis_transform: tuple[float, ...] = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@dataclass
class InitConfig:
    """Initial 3D Gaussians."""

    kind: Literal["shap-e", "ball"] = "shap-e"
    # noisy point growing around the Shap-E vertices
    growth_samples: int = 1_000_000  # uniform samples in the point cloud's bounding box
    growth_radius: float = 0.01  # keep a sample within this distance of a vertex (Shap-E units)
    color_jitter: float = 0.2  # kept colour = vertex colour + color_jitter * U[0,1)^3
    bound: float = 1.6  # scale of the final cloud: radius 4.0 * 0.4
    # random ball
    ball_points: int = 4096
    ball_radius: float = 0.5
    # Gaussian attributes at init
    opacity: float = 0.1  # as a probability; AnchorDS's copy uses sigmoid(1.0) = 0.731
    knn_neighbours: int = 3  # scale = sqrt(mean squared distance to the k nearest neighbours)
    min_scale_sq: float = 1e-7  # distCUDA2 clamp
    sh_degree: int = 0  # GaussianDreamer never raises the SH degree: only DC trains
    shap_e: ShapEConfig = field(default_factory=ShapEConfig)


@dataclass
class OptimConfig:
    """Inria Adam, one group per attribute (gaussiandreamer-recipe.md section 2)."""

    spatial_lr_scale: float = 4.0  # cameras_extent
    lr_means_init: float = 5e-5  # times spatial_lr_scale
    lr_means_final: float = 2.5e-5  # times spatial_lr_scale
    lr_means_max_steps: int = 30_000
    lr_sh_dc: float = 0.0125
    lr_sh_rest: float = 0.0125 / 20
    lr_opacity: float = 0.01
    lr_scales: float = 0.005
    lr_quats: float = 0.001
    adam_eps: float = 1e-15


@dataclass
class DensifyConfig:
    """Densify and prune, as hard-coded in GaussianDreamer (gaussiandreamer-recipe.md section 3)."""

    enabled: bool = True
    stats_until_step: int = 900  # collect view-space gradient statistics while step < this
    start_after_step: int = 300  # densify when step > this ...
    every: int = 100  # ... and step % every == 0 (400, 500, ..., 800)
    stop_after_step: int = 900  # ... and step < this
    grad_threshold: float = 2e-4  # on |sum over views of NDC-space means2d gradient|
    prune_opacity: float = 0.05
    extent: float = 4.0
    big_prune_after_step: int = 500  # screen- and world-size pruning only when step > this
    # "released": GaussianDreamer (as Inria) zeroes the max screen radii inside densification,
    # just before the prune test, so its screen-size rule never fires (only the world-size rule
    # does); "collected-radii": test the radii collected since the last densification, what the
    # rule is meant to do
    screen_size_prune: Literal["released", "collected-radii"] = "released"
    max_screen_radius_px: float = 20.0  # "collected-radii" only
    max_world_size_frac: float = 0.1  # of extent
    percent_dense: float = 0.01
    split_n: int = 2
    split_scale_div: float = 1.6  # 0.8 * split_n
    max_gaussians: int = 2_000_000  # safety cap, not in the recipe


@dataclass
class RenderConfig:
    backend: Literal["auto", "dense", "gsplat"] = "auto"  # auto: gsplat on CUDA, dense on CPU
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # GaussianDreamer trains on black
    eps2d: float = 0.3  # gsplat's low-pass dilation
    packed: bool = False  # gsplat docs: unpacked for small object-centric scenes
    rasterize_mode: Literal["classic", "antialiased"] = "classic"
    dense_chunk_pixels: int = 4096  # CPU renderer: pixels per chunk (memory bound)


@dataclass
class IPAdapterSourceConfig:
    """AnchorDS IP-Adapter anchor (anchords-method.md section 3)."""

    scale: float = 1.0  # set_ip_adapter_scale; released filter/finetune configs use 0.5
    # "clip": the image encoder's own preprocessing (resize, crop, CLIP mean/std);
    # "released": 224x224 bilinear, no normalisation (the released code feeds a [0,1] tensor)
    preprocess: Literal["clip", "released"] = "clip"
    # image condition of the *target* branch: "none" = eps(z_t; y) as in the paper;
    # "black" = released vanilla config; "render" = released tgt_with_cond=True (filter/finetune)
    target_image: Literal["none", "black", "render"] = "none"
    # "per-view": each view sees its own render (paper); "all-views": every view conditioned on
    # all renders of the batch (released code's defect 4, for reproducing its numbers)
    conditioning: Literal["per-view", "all-views"] = "per-view"


@dataclass
class ControlNetSourceConfig:
    """AnchorDS ControlNet anchor (anchords-method.md section 5)."""

    scale: float = 1.0  # applied always (the released code multiplies it by 0: defect 1)
    # "normal": normals rendered from the Gaussians' depth (exact, no detector network);
    # "depth": the rendered depth; "detector": normals estimated from the RGB render alone, the
    # released path's idea. The released code uses NormalBAE; ours is the model set's
    # `control_detector` (DPT-Hybrid MiDaS relative depth) with controlnet_aux's MiDaS normal
    # recipe (generators/guidance/control_maps.py), a different network.
    control_map: Literal["normal", "depth", "detector"] = "normal"
    # the control image has the size of the VAE input (released: fixed_size 512 = SD's VAE input)
    guess_mode: bool = False
    # "detector" only, controlnet_aux MidasDetector defaults: pixels whose depth, normalised to
    # [0, 1] per image, is below bg_th are flat background; `a` is the normals' z component
    detector_bg_threshold: float = 0.1  # bg_th
    detector_normal_z: float = 6.283185307179586  # a = 2 pi


@dataclass
class BridgeConfig:
    """SDS-Bridge (anchords-method.md section 9)."""

    src_modifier: str = (
        "oversaturated, smooth, pixelated, cartoon, foggy, hazy, blurry, bad structure, noisy, malformed"
    )
    tgt_modifier: str = "."
    stage_two_start_step: int = 20_000
    stage_two_weight: float = 1.0


@dataclass
class VSDConfig:
    """VSD (ProlificDreamer) as threestudio implements it (anchords-method.md section 10; threestudio
    `stable-diffusion-vsd-guidance` and configs/prolificdreamer.yaml).

        grad = w(t) (eps_u + s (eps_c - eps_u) - eps_lora(z_t; y, c2w))

    The frozen CFG part is the shared core's: s = guidance.guidance_scale in guidance.cfg_convention
    (the vsd preset sets 7.5, diffusers convention); it is not repeated here. eps_lora is the SAME
    base UNet with peft LoRA adapters (threestudio @28d9d80 used SD 2.1 768-v for the LoRA model;
    its later config uses the base model for both, its "single model" path, which is what we do),
    conditioned on the camera through a TimestepEmbedding(16 -> time_embed_dim) used as the UNet's
    class embedding. The LoRA and that embedding train one step per iteration on the renders.
    """

    lora_rank: int = 4  # diffusers LoRAAttnProcessor's default rank
    lora_alpha: float = 4.0  # peft scales by alpha / rank: 1, as LoRAAttnProcessor (which had no alpha)
    # every attention projection (LoRAAttnProcessor replaced every attention processor)
    lora_target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    lora_scale: float = 1.0  # cross_attention_kwargs scale whenever the LoRA runs (training and guidance)
    # CFG of the LoRA branch over its camera condition: eps(c2w = 0) + s (eps(c2w) - eps(c2w = 0));
    # 1.0 = the camera-conditioned prediction alone (threestudio's value)
    guidance_scale_lora: float = 1.0
    camera_condition: Literal["extrinsics"] = "extrinsics"  # the flattened 4x4 camera-to-world matrix
    # lora_cfg_training: the probability that a LoRA training step zeroes the camera condition of
    # the whole batch (threestudio draws once per step, `random.random() < 0.1`)
    camera_condition_dropout: float = 0.1
    # LoRA training timesteps t ~ U{floor(lo T) .. floor(hi T) - 1} (threestudio: randint(0, 1000))
    lora_t_range: tuple[float, float] = (0.0, 1.0)
    lora_timestep_samples: int = 1  # lora_n_timestamp_samples: noised copies of each render per step
    # optimizer.params.guidance of prolificdreamer.yaml: AdamW(betas (0.9, 0.99), eps 1e-15), lr 1e-4,
    # torch's default AdamW weight decay 0.01
    lr: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.99)
    adam_eps: float = 1e-15
    weight_decay: float = 0.01


@dataclass
class SourceConfig:
    """Which noise prediction plays the source branch of CFG."""

    # "lora": VSD, the frozen model's CFG against a LoRA model of the renders (see VSDConfig)
    kind: Literal["negative-text", "text-modifier", "ip-adapter", "controlnet", "lora"] = "negative-text"
    # source text for negative-text / ip-adapter / controlnet: "negative" = guidance.negative_prompt,
    # "empty" = ""
    text: Literal["negative", "empty"] = "negative"
    ip_adapter: IPAdapterSourceConfig = field(default_factory=IPAdapterSourceConfig)
    controlnet: ControlNetSourceConfig = field(default_factory=ControlNetSourceConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    vsd: VSDConfig = field(default_factory=VSDConfig)


@dataclass
class FilterConfig:
    """AnchorDS filter: a view whose pseudo-source L_rec exceeds gamma contributes no gradient."""

    enabled: bool = False
    gamma: float = 0.03  # released configs: pixel MSE < 0.03
    # pixel: decode x0_hat (exact, released); latent: latent L_rec against gamma in latent units;
    # latent-calibrated: the pixel L_rec estimated without a decode (guidance/pseudo_source.py)
    space: Literal["pixel", "latent", "latent-calibrated"] = "pixel"
    # latent-calibrated: probe images, step along their latent difference, and seed of the
    # once-per-run measurement of the codec's reconstruction floor and gain
    calibration_probes: int = 2
    calibration_step: float = 0.25
    calibration_seed: int = 0


@dataclass
class FinetuneConfig:
    """AnchorDS finetune: train one small adapter layer on L_rec (anchords-method.md section 3)."""

    enabled: bool = False
    # modules whose adapter weights train: IP key/value projections of this UNet block, or a
    # ControlNet module name (released: controlnet_down_blocks.11; "-1" indexes the last one)
    layer: str = "up_blocks.3"
    lr: float = 1e-4
    adam_eps: float = 1e-15
    # the released code measures the finetune L_rec in latent space (the paper writes pixel space;
    # "pixel" backpropagates through the VAE decoder)
    space: Literal["latent", "pixel"] = "latent"
    # the released code lets L_rec push the Gaussians through the image encoder (defect 6)
    grad_to_3d: bool = False


@dataclass
class GuidanceConfig:
    """The one score-distillation computation shared by every method (docs/design.md)."""

    guidance_scale: float = 100.0
    # threestudio: eps_tgt + s (eps_tgt - eps_src)  (= diffusers scale s + 1)
    # diffusers:   eps_src + s (eps_tgt - eps_src)
    cfg_convention: Literal["threestudio", "diffusers"] = "threestudio"
    weighting: Literal["sds", "uniform"] = "sds"  # sds: w(t) = 1 - alpha_bar_t
    t_min: Any = 0.02  # schedule, fraction of the training timesteps
    t_max: Any = field(default_factory=lambda: {"piecewise": [[0, 0.98], [501, 0.55]]})
    grad_clip: Any = field(default_factory=lambda: [0, 1.5, 2.0, 1000])  # None disables
    vae_input_size: int = 512
    latent_sample: Literal["sample", "mean"] = "sample"  # posterior.sample() as released
    negative_prompt: str = (
        "ugly, bad anatomy, blurry, pixelated obscure, unnatural colors, poor lighting, dull, and "
        "unclear, cropped, lowres, low quality, artifacts, duplicate, morbid, mutilated, poorly "
        "drawn face, deformed, dehydrated, bad proportions, unfocused"
    )
    source: SourceConfig = field(default_factory=SourceConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


@dataclass
class LossConfig:
    lambda_sds: Any = 1.0
    # mean(sqrt(o^2 + 0.01)) with o = depth / max depth of the batch (GaussianDreamer's
    # "sparsity" loss is really a depth regulariser)
    lambda_sparsity: Any = 1.0
    # weight of the trainable guidance part's loss: AnchorDS's finetune L_rec, or VSD's LoRA
    # denoising loss (threestudio lambda_lora 1); both are logged as loss_finetune
    lambda_finetune: Any = 1.0


@dataclass
class RunConfig:
    """Everything one (method, prompt, seed, model set) run needs."""

    method: str = "sds"
    prompt: str = ""
    seed: int = 0
    models: str = "sd21"  # model set name (generators/models/sets/<name>.yaml) or a yaml path
    # the set's `version` when it pins its local weights (generators/models/fingerprint.py), filled
    # in from the set by resolve_run_config: a new version of the weights makes new run ids
    models_version: str = ""
    steps: int = 1200
    checkpoint_every: int = 100
    log_every: int = 1
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # numeric precision (generators/precision.py): "auto" = bf16 on CUDA GPUs with native bf16
    # (Ampere and newer), fp16 with dynamic loss scaling on older ones, fp32 on CPU. Half precision
    # = frozen networks in that dtype under autocast; what trains keeps fp32 weights.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    camera: CameraConfig = field(default_factory=CameraConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)


# ----------------------------------------------------------------------------------------------
# Strict loading and merging

_SCHEDULE_FIELDS = {"t_min", "t_max", "grad_clip", "lambda_sds", "lambda_sparsity", "lambda_finetune"}


def _check_value(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {brief(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_value(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: bad value {brief(value)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {brief(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_value(args[0], v, key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_check_value(a, v, key) for a, v in zip(args, value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {brief(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}: expected an integer, got {brief(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {brief(value)}")
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"{key}: {brief(value)} is too large for a number") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {brief(value)}")
        return value
    return value


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in '{prefix}'" if prefix else ""
        raise ConfigError(
            f"unknown config key{'s' if len(unknown) > 1 else ''}{where}: "
            f"{', '.join(unknown)} (valid: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _check_value(hints[name], value, key)
        if name in _SCHEDULE_FIELDS and kwargs[name] is not None:
            try:
                validate_schedule(kwargs[name], key)
            except ScheduleError as e:
                raise ConfigError(str(e)) from None
    # nested dataclasses given partially: start from defaults, then apply
    obj = cls()
    for name, value in kwargs.items():
        setattr(obj, name, value)
    return obj


def deep_merge(base: dict, override: dict) -> dict:
    """Recursively merge `override` into a copy of `base` (mappings merge, the rest replaces)."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and "piecewise" not in v:
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


_KEY_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_dotted(assignments: list[str]) -> dict:
    """Turn ["guidance.guidance_scale=50", "steps=10"] into a nested dict.

    Each value is one YAML scalar or flow collection, read as YAML 1.2 numbers (1e38 is a float)
    within generators.untrusted's bounds; a malformed value, an empty key part or two settings of
    one key and its sub-key (`a=1` and `a.b=2`) is a ConfigError; else the last
    setting of a key wins."""
    import yaml

    from generators.untrusted import safe_load

    out: dict = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"override {brief(item)} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(_KEY_PART.fullmatch(p) for p in parts):
            raise ConfigError(f"override {brief(item)}: {brief(key)} is not a dotted config key (e.g. guidance.guidance_scale)")
        try:
            value = safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {brief(item)}: the value is not valid YAML ({' '.join(str(e).split())})") from None
        node = out
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {brief(item)}: {'.'.join(parts[:i + 1])} is already set to a value")
        if isinstance(node.get(parts[-1]), dict):  # the last setting of one key wins, but not over its sub-keys
            raise ConfigError(f"override {brief(item)}: {key.strip()} already has sub-keys set")
        node[parts[-1]] = value
    return out


# ----------------------------------------------------------------------------------------------
# Domains of the numeric settings, checked once for the whole config (validate_settings) so every
# bad value is refused when a job is planned, never found mid-run. "[a, b)" notation; "2^63" and
# "inf" as bounds; a tuple setting checks each element. Every other float must be finite.

DOMAINS = {
    "seed": "[0, 2^63)",  # torch generator seeds
    "steps": "[1, inf)", "checkpoint_every": "[1, inf)", "log_every": "[1, inf)",
    "camera.batch_size": "[1, inf)", "camera.width": "[1, inf)", "camera.height": "[1, inf)",
    "camera.distance_range": "(0, inf)", "camera.elevation_range_deg": "[-90, 90]",
    "camera.azimuth_range_deg": "[-360, 360]", "camera.fov_y_range_deg": "(0, 180)",
    "camera.near": "(0, inf)", "camera.far": "(0, inf)", "camera.front_threshold_deg": "[0, 180]",
    "camera.back_threshold_deg": "[0, 180]", "camera.overhead_threshold_deg": "[-90, 90]",
    "views.turntable_frames": "[0, inf)", "views.turntable_fps": "[1, inf)", "views.elevation_deg": "[-90, 90]",
    "views.distance": "(0, inf)", "views.fov_y_deg": "(0, 180)", "views.width": "[1, inf)",
    "views.height": "[1, inf)", "views.grid_views": "[1, inf)", "views.background": "[0, 1]",
    "init.shap_e.num_inference_steps": "[1, inf)", "init.shap_e.frame_size": "[1, inf)",
    "init.shap_e.mesh_grid_size": "[2, inf)", "init.growth_samples": "[1, inf)", "init.growth_radius": "(0, inf)",
    "init.color_jitter": "[0, inf)", "init.bound": "(0, inf)", "init.ball_points": "[1, inf)",
    "init.ball_radius": "(0, inf)", "init.opacity": "(0, 1)", "init.knn_neighbours": "[1, inf)",
    "init.min_scale_sq": "(0, inf)", "init.sh_degree": "[0, 3]",
    "optim.spatial_lr_scale": "(0, inf)", "optim.lr_means_init": "[0, inf)", "optim.lr_means_final": "[0, inf)",
    "optim.lr_means_max_steps": "[1, inf)", "optim.lr_sh_dc": "[0, inf)", "optim.lr_sh_rest": "[0, inf)",
    "optim.lr_opacity": "[0, inf)", "optim.lr_scales": "[0, inf)", "optim.lr_quats": "[0, inf)",
    "optim.adam_eps": "(0, inf)",
    "densify.stats_until_step": "[0, inf)", "densify.start_after_step": "[0, inf)", "densify.every": "[1, inf)",
    "densify.stop_after_step": "[0, inf)", "densify.grad_threshold": "[0, inf)", "densify.prune_opacity": "[0, 1]",
    "densify.extent": "(0, inf)", "densify.big_prune_after_step": "[0, inf)",
    "densify.max_screen_radius_px": "(0, inf)", "densify.max_world_size_frac": "(0, inf)",
    "densify.percent_dense": "(0, inf)", "densify.split_n": "[1, inf)", "densify.split_scale_div": "(0, inf)",
    "densify.max_gaussians": "[1, inf)",
    "render.background": "[0, 1]", "render.eps2d": "[0, inf)", "render.dense_chunk_pixels": "[1, inf)",
    "guidance.vae_input_size": "[8, inf)",
    "guidance.source.controlnet.detector_bg_threshold": "[0, 1]",
    "guidance.source.bridge.stage_two_start_step": "[0, inf)",
    "guidance.source.vsd.lora_rank": "[1, inf)", "guidance.source.vsd.lora_alpha": "(0, inf)",
    "guidance.source.vsd.camera_condition_dropout": "[0, 1]", "guidance.source.vsd.lora_t_range": "[0, 1]",
    "guidance.source.vsd.lora_timestep_samples": "[1, inf)", "guidance.source.vsd.lr": "[0, inf)",
    "guidance.source.vsd.adam_betas": "[0, 1)", "guidance.source.vsd.adam_eps": "(0, inf)",
    "guidance.source.vsd.weight_decay": "[0, inf)",
    "guidance.filter.gamma": "[0, inf]",  # inf: keep every view
    "guidance.finetune.lr": "[0, inf)", "guidance.finetune.adam_eps": "(0, inf)",
}
# (low, high) pairs: low <= high
ORDERED_PAIRS = ("camera.distance_range", "camera.elevation_range_deg", "camera.azimuth_range_deg",
                 "camera.fov_y_range_deg", "guidance.source.vsd.lora_t_range")
_BOUNDS = {"inf": math.inf, "-inf": -math.inf, "2^63": 2**63}


def _in_domain(value: float, domain: str) -> bool:
    lo, hi = (_BOUNDS.get(b.strip()) if b.strip() in _BOUNDS else float(b) for b in domain[1:-1].split(","))
    above = value >= lo if domain[0] == "[" else value > lo
    below = value <= hi if domain[-1] == "]" else value < hi
    return above and below


def check_domains(obj: Any, domains: dict, ordered: tuple = ()) -> None:
    """Raise ConfigError naming the first setting of the dataclass `obj` outside its domain in
    `domains` (dotted key -> "[a, b)"), or the first `ordered` pair with its low end above its
    high end; a float setting without a listed domain must be finite."""
    def walk(node: Any, prefix: str) -> None:
        for f in dataclasses.fields(node):
            key, value = f"{prefix}{f.name}", getattr(node, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, f"{key}.")
                continue
            values = value if isinstance(value, tuple) else (value,)
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if not numbers or (key not in domains and not isinstance(numbers[0], float)):
                continue
            domain = domains.get(key, "(-inf, inf)")
            for v in numbers:
                if math.isnan(v) or not _in_domain(v, domain):
                    raise ConfigError(f"{key}: must be in {domain}, got {brief(value)}")
            if key in ordered and values[0] > values[1]:
                raise ConfigError(f"{key}: the low end {values[0]} is above the high end {values[1]}")

    walk(obj, "")


def validate_settings(cfg: RunConfig) -> None:
    """Raise ConfigError naming the first setting of a run outside its domain (DOMAINS, ORDERED_PAIRS)."""
    check_domains(cfg, DOMAINS, ORDERED_PAIRS)
    if not cfg.camera.near < cfg.camera.far:
        raise ConfigError(f"camera.near ({cfg.camera.near}) must be below camera.far ({cfg.camera.far})")


def config_from_dict(data: dict) -> RunConfig:
    """Build a RunConfig from a (partial) nested dict, strictly, every setting inside its domain."""
    cfg = _build(RunConfig, data)
    validate_settings(cfg)
    return cfg


def config_to_dict(cfg: Any) -> dict:
    """A plain, YAML-safe dict (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(cfg)


# settings that do not change a run's result: excluded from its hash, so changing the checkpoint
# cadence (or the step budget, which the harness's run id adds back) resumes the same run
UNHASHED_FIELDS = ("steps", "checkpoint_every", "log_every", "device")


def hashed_settings(d: dict) -> dict:
    """The entries of `config_to_dict(cfg)` that a run's hash covers. An empty `models_version`
    (a set that pins no version) is left out, so the ids of runs made before versions existed
    stay what they were."""
    return {k: v for k, v in d.items() if k not in UNHASHED_FIELDS and not (k == "models_version" and not v)}


def config_hash_of_dict(d: dict) -> str:
    """16 hex of the sha256 of the result-changing settings of `config_to_dict(cfg)`."""
    hashed = hashed_settings(d)
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:16]


def config_hash(cfg: RunConfig) -> str:
    return config_hash_of_dict(config_to_dict(cfg))
