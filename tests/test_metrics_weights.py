"""`python -m metrics weights` (make weights-eval): one weight format, the total size printed first; no network."""

from __future__ import annotations

import pytest

import metrics.models as mm

GB = 10**9
# a hand-made listing in the shape of the hub repos of the t3bench set (sizes rounded)
LISTINGS = {
    "THUDM/ImageReward": [("ImageReward.pt", 1_790_000_000), ("med_config.json", 500), ("README.md", 3000)],
    "google-bert/bert-base-uncased": [("vocab.txt", 231_508), ("tokenizer.json", 466_062),
                                      ("tokenizer_config.json", 48), ("config.json", 570),
                                      ("model.safetensors", 440_000_000), ("pytorch_model.bin", 440_000_000),
                                      ("tf_model.h5", 536_000_000), ("flax_model.msgpack", 438_000_000)],
    "timm/vit_large_patch14_clip_224.openai": [("open_clip_config.json", 1000),
                                               ("open_clip_model.safetensors", 1_710_000_000),
                                               ("open_clip_pytorch_model.bin", 1_710_000_000)],
    "Salesforce/blip2-flan-t5-xxl": [
        ("config.json", 7000), ("preprocessor_config.json", 400), ("spiece.model", 792_000),
        ("tokenizer.json", 2_420_000), ("tokenizer_config.json", 2500), ("special_tokens_map.json", 2200),
        ("model.safetensors.index.json", 120_000), ("pytorch_model.bin.index.json", 120_000),
        *((f"model-0000{i}-of-00006.safetensors", 8_150_000_000) for i in range(1, 7)),
        *((f"pytorch_model-0000{i}-of-00006.bin", 8_150_000_000) for i in range(1, 7)),
    ],
}


def _listing(repo, revision):
    return LISTINGS[repo]


@pytest.fixture
def fetched():
    """The fetches made, recorded by a stand-in downloader passed to fetch_weights (no network)."""
    return []


def _recorder(fetched):
    return lambda repo, revision, cache_dir, allow_patterns: fetched.append((repo, list(allow_patterns)))


def test_one_weight_format_and_the_total_printed_before_fetching(fetched):
    lines = []

    def log(m):
        lines.append((m, len(fetched)))  # how many fetches had happened when the line was printed

    done = mm.fetch_weights("t3bench", log=log, listing=_listing, download=_recorder(fetched))
    got = dict(fetched)
    blip = got["Salesforce/blip2-flan-t5-xxl"]
    assert not any(p.endswith(".bin") or p.endswith(".bin.index.json") for p in blip)
    assert sum(p.endswith(".safetensors") for p in blip) == 6 and "model.safetensors.index.json" in blip
    assert got["timm/vit_large_patch14_clip_224.openai"] == ["open_clip_config.json", "open_clip_model.safetensors"]
    assert got["THUDM/ImageReward"] == ["ImageReward.pt", "med_config.json"]
    assert set(got["google-bert/bert-base-uncased"]) == {"vocab.txt", "tokenizer.json", "tokenizer_config.json", "config.json"}
    total = sum(n for repo, files in fetched for p, n in LISTINGS[repo] if p in files)
    (total_line, fetched_before), = [(m, k) for m, k in lines if m.startswith("[metrics] total download")]
    assert f"{total / GB:.2f} GB" in total_line and fetched_before == 0  # printed before any fetch
    assert 50 < total / GB < 55  # ~49 GB of BLIP-2 once (not ~98 GB), ImageReward, CLIP
    assert len(done) == 4


def test_dry_run_fetches_nothing(fetched):
    assert mm.fetch_weights("t3bench", dry_run=True, log=lambda m: None, listing=_listing,
                            download=_recorder(fetched)) == [] and fetched == []


def test_choose_files_keeps_bin_only_repos_and_names_missing_files():
    bin_only = [("config.json", 1), ("pytorch_model.bin", 10), ("tf_model.h5", 10)]
    assert mm.choose_files(bin_only, None) == [("config.json", 1), ("pytorch_model.bin", 10)]
    with pytest.raises(mm.UserError, match="nope.json"):
        mm.choose_files(bin_only, ["config.json", "nope.json"])
