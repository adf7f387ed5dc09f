"""T3Bench quality: icosphere, regional averaging, scaling, camera protocols, normalisation, and
the ImageReward scorer (tiny weights through the real loader, key mapping, reference forward)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from generators.config import RenderConfig  # noqa: E402
from generators.errors import UserError  # noqa: E402
from generators.gaussians.model import Gaussians  # noqa: E402
from metrics.cameras import alignment_cameras, quality_cameras, render_views  # noqa: E402
from metrics.config import AlignmentViewsConfig, QualityConfig  # noqa: E402
from metrics.icosphere import icosphere, regional_average  # noqa: E402
from metrics.normalize import normalize_gaussians  # noqa: E402
from metrics.quality import quality_score  # noqa: E402

PHI = (1 + 5 ** 0.5) / 2


# ----------------------------------------------------------------------------------------------
# Icosphere


def _reference_vertex_set(subdivisions: int) -> np.ndarray:
    """Geodesic sphere built without faces: each level adds normalize(a + b) for every pair of
    adjacent points (adjacent = closer than 1.3x the smallest distance of that level)."""
    base = []
    for a in (-1, 1):
        for b in (-1, 1):
            base += [(0, a, b * PHI), (a, b * PHI, 0), (b * PHI, 0, a)]
    pts = np.array(base, dtype=np.float64)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    for _ in range(subdivisions):
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        edge = d[d > 1e-9].min()
        i, j = np.nonzero((d > 1e-9) & (d < 1.3 * edge) & (np.arange(len(pts))[:, None] < np.arange(len(pts))[None]))
        mids = pts[i] + pts[j]
        pts = np.concatenate([pts, mids / np.linalg.norm(mids, axis=1, keepdims=True)])
    return pts


@pytest.mark.parametrize("subdivisions,count", [(0, 12), (1, 42), (2, 162)])
def test_icosphere_counts_radius_and_vertex_set(subdivisions, count):
    ico = icosphere(subdivisions, radius=2.2)
    v = ico.vertices.numpy()
    assert v.shape == (count, 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 2.2, atol=1e-12)
    ref = _reference_vertex_set(subdivisions) * 2.2
    assert ref.shape == (count, 3)
    d = np.linalg.norm(v[:, None] - ref[None], axis=-1)
    # the same set up to order: a bijection with (numerically) zero distances
    assert d.min(axis=1).max() < 1e-9
    assert len(set(d.argmin(axis=1).tolist())) == count


def test_icosphere_neighbourhoods():
    ico = icosphere(2, radius=2.2)
    sizes = [len(n) for n in ico.neighbours]
    assert sizes.count(5) == 12 and sizes.count(6) == 150
    v = ico.vertices.numpy()
    d = np.linalg.norm(v[:, None] - v[None], axis=-1)
    for i, ring in enumerate(ico.neighbours):
        assert i not in ring
        assert all(i in ico.neighbours[j] for j in ring)  # symmetric
        # the 1-ring is exactly the |ring| nearest other vertices
        nearest = set(np.argsort(d[i])[1:len(ring) + 1].tolist())
        assert nearest == set(ring)
    # the 12 five-neighbour vertices are the original icosahedron's (|coords| use 0, 1, phi)
    five = v[[i for i, s in enumerate(sizes) if s == 5]] / 2.2
    assert np.allclose(np.sort(np.abs(five), axis=1)[:, 0], 0.0, atol=1e-12)


def test_regional_average_delta_by_hand():
    ico = icosphere(2)
    sizes = [len(n) for n in ico.neighbours]
    six = sizes.index(6)
    five = sizes.index(5)
    for v, k in ((six, 6), (five, 5)):
        scores = torch.zeros(162, dtype=torch.float64)
        scores[v] = 1.0
        out = regional_average(scores, ico.neighbours, rounds=1)
        assert out[v] == pytest.approx(1.0 / (k + 1))
        for u in range(162):
            if u == v:
                continue
            expected = 1.0 / (sizes[u] + 1) if u in ico.neighbours[v] else 0.0
            assert out[u] == pytest.approx(expected)
        assert out.sum() == pytest.approx(sum(1.0 / (sizes[u] + 1) for u in ico.neighbours[v]) + 1.0 / (k + 1))


def test_regional_average_is_a_jacobi_step_on_a_path():
    # path 0 - 1 - 2, delta at 0; by hand: round 1 = [1/2, 1/3, 0], round 2 = [5/12, 5/18, 1/6]
    # (updating in place, Gauss-Seidel, would give a different second round)
    out = regional_average(torch.tensor([1.0, 0.0, 0.0]), ((1,), (0, 2), (1,)), rounds=2)
    np.testing.assert_allclose(out.numpy(), [5 / 12, 5 / 18, 1 / 6], atol=1e-15)
    const = regional_average(torch.full((162,), 0.3), icosphere(2).neighbours, rounds=3)
    np.testing.assert_allclose(const.numpy(), 0.3, atol=1e-15)


def test_quality_scaling_and_best_fov():
    assert quality_score(torch.zeros(162, 5))["score"] == pytest.approx(50.0)
    assert quality_score(torch.full((162, 5), -10.0))["score"] == pytest.approx(-150.0)  # not clipped
    # the best field of view wins at every point: fov 3 holds 1.0 everywhere, the others -5
    scores = torch.full((162, 5), -5.0)
    scores[:, 3] = 1.0
    out = quality_score(scores)
    assert out["score"] == pytest.approx(70.0)
    assert set(out["best_fov_index"]) == {3}
    # one good view at a 6-neighbour point; 1 round of smoothing: (7 + 0 * 6) / 7 = 1 -> 70
    ico = icosphere(2)
    v = [len(n) for n in ico.neighbours].index(6)
    scores = torch.zeros(162, 5)
    scores[v, 2] = 7.0
    out = quality_score(scores, QualityConfig(smoothing_rounds=1))
    assert out["best_point"] == v
    assert out["score"] == pytest.approx(70.0)
    with pytest.raises(ValueError, match="NaN"):
        quality_score(torch.full((162, 5), float("nan")))


# ----------------------------------------------------------------------------------------------
# Camera protocols


def _t3bench_pose(v: np.ndarray) -> np.ndarray:
    """render/meshrender.py's camera pose, transcribed."""
    f = v / np.linalg.norm(v)
    u = np.array([0, 0, 1.0]) if abs(np.dot(f, [0, 0, 1])) < 0.99 else np.array([0, 1.0, 0])
    r = np.cross(u, -v)
    r /= np.linalg.norm(r)
    u_ = np.cross(-v, r)
    u_ /= np.linalg.norm(u_)
    return np.stack([-r, u_, f], axis=1)


def test_quality_camera_protocol_geometry():
    cfg = QualityConfig()
    cams, point, fov = quality_cameras(cfg)
    assert len(cams) == 810 and cams.width == cams.height == 512
    np.testing.assert_allclose(cams.positions.norm(dim=-1).numpy(), 2.2, rtol=1e-6)
    np.testing.assert_allclose(cams.distance.numpy(), 2.2, rtol=1e-6)
    # five fields of view per point: pi/3, pi/4, pi/5, pi/6, pi/7.5
    for p in (0, 57, 161):
        fovs = sorted(cams.fov_y[point == p].tolist())
        np.testing.assert_allclose(fovs, sorted([math.pi / k for k in (3, 4, 5, 6, 7.5)]), rtol=1e-6)
    # every pose equals T3Bench's (poles included)
    for i in range(0, 810, 5):
        np.testing.assert_allclose(cams.c2w[i, :3, :3].numpy(), _t3bench_pose(cams.positions[i].double().numpy()), atol=1e-6)
    # the front point sits on +x and looks along -x, z up
    front = int(torch.argmax(cams.positions[:, 0]))
    np.testing.assert_allclose(cams.positions[front].numpy(), [2.2, 0, 0], atol=1e-6)
    np.testing.assert_allclose((-cams.c2w[front, :3, 2]).numpy(), [-1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(cams.c2w[front, :3, 1].numpy(), [0, 0, 1], atol=1e-6)
    # the origin projects to the image centre in every view
    origin = torch.tensor([0.0, 0.0, 0.0, 1.0])
    cam_pts = (cams.viewmats @ origin)[:, :3]
    pix = (cams.Ks @ cam_pts[..., None])[..., 0]
    np.testing.assert_allclose((pix[:, :2] / pix[:, 2:]).numpy(), 256.0, atol=1e-3)


def test_alignment_camera_protocol_geometry():
    cams = alignment_cameras(AlignmentViewsConfig())
    assert len(cams) == 12
    np.testing.assert_allclose(cams.distance.numpy(), 4.84, rtol=1e-6)
    np.testing.assert_allclose(cams.fov_y.numpy(), math.pi / 3, rtol=1e-6)
    assert int((cams.positions[:, 2] < 0).sum()) == 4  # 4 of the 12 views look from below


def _blob(position, color, n_scale=0.05):
    return Gaussians.from_points(torch.tensor([position]), torch.tensor([color]), torch.tensor([n_scale]), 0.99)


def test_render_orientation_matches_t3bench():
    """From the front camera (+x, z up) a point at +z is above the centre and +y to the right."""
    cfg = QualityConfig(width=32, height=32, fov_y_deg=(60.0,))
    cams, _, _ = quality_cameras(cfg)
    front = int(torch.argmax(cams.positions[:, 0]))
    cam = cams.subset([front])
    for position, check in (([0.0, 0.0, 0.6], lambda r, c: r < 12 and 13 < c < 19),
                            ([0.0, 0.6, 0.0], lambda r, c: c > 19 and 13 < r < 19)):
        img = render_views(_blob(position, [1.0, 1.0, 1.0]), cam, RenderConfig(backend="dense"), (0, 0, 0), 1)[0]
        lum = img.astype(np.float64).sum(-1)
        r, c = np.unravel_index(lum.argmax(), lum.shape)
        assert check(r, c), (position, r, c)
        assert img[0, 0].tolist() == [0, 0, 0]  # black background


def test_normalize_gaussians_to_unit_cube():
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(50, 3, generator=g) * torch.tensor([2.0, 0.5, 1.0]) + torch.tensor([5.0, -3.0, 1.0])
    gs = Gaussians.from_points(pts, torch.rand(50, 3, generator=g), torch.full((50,), 0.1), 0.5)
    out, frame = normalize_gaussians(gs)
    centred = pts - pts.mean(0)
    s = centred.abs().max()
    torch.testing.assert_close(out.means, centred / s)
    assert out.means.abs().max() == pytest.approx(1.0)
    torch.testing.assert_close(out.scales_act, gs.scales_act / s)
    torch.testing.assert_close(out.opacities_act, gs.opacities_act)
    torch.testing.assert_close(out.sh_coeffs, gs.sh_coeffs)
    assert frame["scale"] == pytest.approx(float(s))
    np.testing.assert_allclose(frame["center"], pts.mean(0).numpy(), rtol=1e-5)
    with pytest.raises(UserError):
        normalize_gaussians(Gaussians.from_points(torch.zeros(3, 3), torch.rand(3, 3), torch.full((3,), 0.1), 0.5))


# ----------------------------------------------------------------------------------------------
# ImageReward

from metrics import image_reward as ir  # noqa: E402

TINY_MED = {**ir.TINY_TEXT, "vocab_size": 50}
SETTINGS = dict(vision=ir.TINY_VISION, max_text_length=35, reward_mean=0.16717362830052426,
                reward_std=1.0333394966054072, image_mean=(0.48145466, 0.4578275, 0.40821073),
                image_std=(0.26862954, 0.26130258, 0.27577711))


def _fresh_model(med=TINY_MED):
    vis = ir.vision_config_from_dict(ir.TINY_VISION)
    return ir.ImageRewardModel(vis, ir.text_config_from_med(med, vis.hidden_size), ir.TINY_HEAD_WIDTHS)


def test_key_mapping_round_trips_exactly():
    state = ir.random_original_state(ir.TINY_VISION, TINY_MED, ir.TINY_HEAD_WIDTHS, seed=11)
    model = _fresh_model()
    record = ir.load_original_weights(model, state)
    assert set(record["ignored"]) == {"blip.vision_proj.weight", "blip.vision_proj.bias", "blip.text_proj.weight",
                                      "blip.text_proj.bias", "blip.text_encoder.embeddings.position_ids"}
    ours = model.state_dict()
    # hand-written correspondences (the BLIP names -> transformers names)
    pairs = {
        "blip.visual_encoder.cls_token": "vision.embeddings.class_embedding",
        "blip.visual_encoder.pos_embed": "vision.embeddings.position_embedding",
        "blip.visual_encoder.patch_embed.proj.weight": "vision.embeddings.patch_embedding.weight",
        "blip.visual_encoder.blocks.1.attn.qkv.weight": "vision.encoder.layers.1.self_attn.qkv.weight",
        "blip.visual_encoder.blocks.0.attn.proj.bias": "vision.encoder.layers.0.self_attn.projection.bias",
        "blip.visual_encoder.blocks.1.norm2.weight": "vision.encoder.layers.1.layer_norm2.weight",
        "blip.visual_encoder.norm.bias": "vision.post_layernorm.bias",
        "blip.text_encoder.encoder.layer.1.crossattention.self.key.weight": "text.encoder.layer.1.crossattention.self.key.weight",
        "blip.text_encoder.encoder.layer.0.output.LayerNorm.bias": "text.encoder.layer.0.output.LayerNorm.bias",
        "blip.text_encoder.embeddings.word_embeddings.weight": "text.embeddings.word_embeddings.weight",
        "mlp.layers.7.weight": "head.7.weight",
        "mlp.layers.4.bias": "head.4.bias",
    }
    for src, dst in pairs.items():
        assert torch.equal(state[src], ours[dst]), (src, dst)
    # every model tensor came from a distinct checkpoint tensor (random values: equality = identity)
    used = set()
    for name, tensor in ours.items():
        matches = [k for k, v in state.items() if v.shape == tensor.shape and torch.equal(v, tensor)]
        assert len(matches) == 1, (name, matches)
        used.add(matches[0])
    assert used == set(state) - set(record["ignored"])


def test_loader_names_unmapped_and_missing_keys():
    state = ir.random_original_state(ir.TINY_VISION, TINY_MED, ir.TINY_HEAD_WIDTHS, seed=1)
    bad = dict(state, **{"blip.itm_head.weight": torch.zeros(2, 32)})
    with pytest.raises(UserError, match="blip.itm_head.weight"):
        ir.load_original_weights(_fresh_model(), bad)
    short = {k: v for k, v in state.items() if k != "blip.visual_encoder.blocks.1.mlp.fc2.bias"}
    with pytest.raises(UserError, match="vision.encoder.layers.1.mlp.fc2.bias"):
        ir.load_original_weights(_fresh_model(), short)


def _reference_reward(state, pixels, ids, mask, heads_v, heads_t, eps_v=1e-6, eps_t=1e-12):
    """ImageReward's forward written from the original module definitions and key names."""
    F = torch.nn.functional
    s = lambda k: state[k].double()  # noqa: E731
    x = F.conv2d(pixels.double(), s("blip.visual_encoder.patch_embed.proj.weight"),
                 s("blip.visual_encoder.patch_embed.proj.bias"), stride=state["blip.visual_encoder.patch_embed.proj.weight"].shape[-1])
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([s("blip.visual_encoder.cls_token").expand(x.shape[0], -1, -1), x], 1) + s("blip.visual_encoder.pos_embed")

    def ln(t, p, eps):
        return F.layer_norm(t, t.shape[-1:], s(p + ".weight"), s(p + ".bias"), eps)

    def mha(q_in, kv_in, wq, wk, wv, heads, bias=None):
        B, N, D = q_in.shape
        q = wq(q_in).view(B, N, heads, -1).transpose(1, 2)
        k = wk(kv_in).view(B, kv_in.shape[1], heads, -1).transpose(1, 2)
        v = wv(kv_in).view(B, kv_in.shape[1], heads, -1).transpose(1, 2)
        att = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if bias is not None:
            att = att + bias
        return (att.softmax(-1) @ v).transpose(1, 2).reshape(B, N, -1)

    lin = lambda p: (lambda t: F.linear(t, s(p + ".weight"), s(p + ".bias")))  # noqa: E731
    i = 0
    while f"blip.visual_encoder.blocks.{i}.norm1.weight" in state:
        b = f"blip.visual_encoder.blocks.{i}"
        h = ln(x, b + ".norm1", eps_v)
        D = h.shape[-1]
        wqkv, bqkv = s(b + ".attn.qkv.weight"), s(b + ".attn.qkv.bias")
        parts = [lambda t, j=j: F.linear(t, wqkv[j * D:(j + 1) * D], bqkv[j * D:(j + 1) * D]) for j in range(3)]
        x = x + lin(b + ".attn.proj")(mha(h, h, *parts, heads_v))
        x = x + lin(b + ".mlp.fc2")(F.gelu(lin(b + ".mlp.fc1")(ln(x, b + ".norm2", eps_v))))
        i += 1
    img = ln(x, "blip.visual_encoder.norm", eps_v)
    t = "blip.text_encoder"
    h = F.embedding(ids, s(f"{t}.embeddings.word_embeddings.weight")) + s(f"{t}.embeddings.position_embeddings.weight")[: ids.shape[1]]
    h = ln(h, f"{t}.embeddings.LayerNorm", eps_t)
    pad_bias = (1.0 - mask.double())[:, None, None, :] * torch.finfo(torch.float64).min
    i = 0
    while f"{t}.encoder.layer.{i}.attention.self.query.weight" in state:
        lay = f"{t}.encoder.layer.{i}"
        for att, kv, bias in (("attention", None, pad_bias), ("crossattention", img, None)):
            a = mha(h, h if kv is None else kv, lin(f"{lay}.{att}.self.query"), lin(f"{lay}.{att}.self.key"),
                    lin(f"{lay}.{att}.self.value"), heads_t, bias)
            h = ln(lin(f"{lay}.{att}.output.dense")(a) + h, f"{lay}.{att}.output.LayerNorm", eps_t)
        h = ln(lin(f"{lay}.output.dense")(F.gelu(lin(f"{lay}.intermediate.dense")(h))) + h, f"{lay}.output.LayerNorm", eps_t)
        i += 1
    r = h[:, 0]
    for idx in (0, 2, 4, 6, 7):
        r = lin(f"mlp.layers.{idx}")(r)
    return r[:, 0]


def test_model_matches_reference_forward():
    state = ir.random_original_state(ir.TINY_VISION, TINY_MED, ir.TINY_HEAD_WIDTHS, seed=5)
    model = _fresh_model().eval()
    ir.load_original_weights(model, state)
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(3, 3, 32, 32, generator=g)
    ids = torch.randint(5, 50, (3, 9), generator=g)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0  # padding must be ignored by self-attention
    with torch.no_grad():
        ours = model(pixels, ids, mask).double()
    ref = _reference_reward(state, pixels, ids, mask, ir.TINY_VISION["num_attention_heads"], TINY_MED["num_attention_heads"])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    assert ours.std() > 1e-3  # the images/texts actually change the reward


@pytest.fixture(scope="module")
def tiny_scorer():
    from metrics.models import load_metric_models

    return load_metric_models("tiny", ("quality",), "cpu").image_reward


def test_tiny_image_reward_loads_and_is_deterministic(tiny_scorer):
    from metrics.models import load_metric_models

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    a = tiny_scorer.score("a red apple on a table", images)
    b = tiny_scorer.score("a red apple on a table", images)
    assert a.shape == (4,) and torch.equal(a, b)
    again = load_metric_models("tiny", ("quality",), "cpu").image_reward
    assert torch.equal(again.score("a red apple on a table", images), a)
    assert not torch.allclose(tiny_scorer.score("a blue cat", images), a)
    # standardisation of the raw head output
    pixels = tiny_scorer.preprocess(images)
    ids, mask = tiny_scorer.tokenize("a red apple on a table")
    with torch.no_grad():
        raw = tiny_scorer.model(pixels, ids.expand(4, -1), mask.expand(4, -1)).double()
    torch.testing.assert_close(a, (raw - 0.16717362830052426) / 1.0333394966054072)
    assert ids.shape == (1, 35) and tiny_scorer.tokenizer.convert_ids_to_tokens(int(ids[0, 0])) == "[CLS]"
    assert tiny_scorer.info["set"] == "tiny" and "revision" in tiny_scorer.info


def test_preprocess_is_pil_bicubic_with_clip_normalisation(tiny_scorer):
    from PIL import Image

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    x = tiny_scorer.preprocess(img[None])
    expected = np.asarray(Image.fromarray(img).resize((32, 32), Image.BICUBIC), dtype=np.float32) / 255.0
    mean = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
    std = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), (expected - mean) / std, atol=1e-5)
    wide = tiny_scorer.preprocess(rng.integers(0, 256, (2, 40, 80, 3), dtype=np.uint8))
    assert wide.shape == (2, 3, 32, 32)


PUBLISHED_PROMPT = "a painting of an ocean with clouds and birds, day time, low depth field effect"
PUBLISHED_SCORES = {"1.webp": 0.58, "2.webp": 0.27, "3.webp": -1.41, "4.webp": -2.03}  # ImageReward README


@pytest.mark.skipif(not os.environ.get("IMAGEREWARD_ASSETS"),
                    reason="set IMAGEREWARD_ASSETS to THUDM/ImageReward's assets/images and fetch the t3bench set")
def test_real_image_reward_reproduces_published_scores():
    """ImageReward's README: these four images score 0.58, 0.27, -1.41, -2.03 (2 decimals)."""
    from PIL import Image

    from metrics.models import load_metric_models

    scorer = load_metric_models("t3bench", ("quality",), "cuda" if torch.cuda.is_available() else "cpu").image_reward
    folder = Path(os.environ["IMAGEREWARD_ASSETS"])
    for name, published in PUBLISHED_SCORES.items():
        img = np.asarray(Image.open(folder / name).convert("RGB"))
        assert float(scorer.score(PUBLISHED_PROMPT, img[None])[0]) == pytest.approx(published, abs=0.02), name
