"""The FLOP account of one optimisation step at the paper's settings (full-size networks on the meta
device, the real guidance code path): the issue's cost targets, as ratios to `sds`, hold. A change
that adds work to a method's step fails here."""

import pytest

from generators.flops import count_method_step

# issue 10's targets: FLOPs per step relative to sds on the same (SD 1.5) networks
TARGETS = {"anchords-ipa": 1.10, "anchords-ipa-finetune": 1.25, "anchords-ipa-filter": 1.15}


@pytest.fixture(scope="module")
def sds():
    return count_method_step("sds")


def test_sds_step_matches_the_issue_first_count(sds):
    """Full-size SD 1.5, 4 views, 512 px VAE input: UNet batch-8 forward ~6.4 TFLOP, VAE encoder
    forward + input-gradient backward ~9.1, the step ~15.5 (the issue's independent count)."""
    assert sds.settings["views"] == 4 and sds.settings["render"] == [1024, 1024] and sds.settings["vae_input"] == 512
    assert sds.module("unet", "forward") / 1e12 == pytest.approx(6.4, rel=0.03)
    assert sds.module("unet", "backward") == 0  # SDS never backpropagates through the UNet
    assert sds.module("vae_encoder") / 1e12 == pytest.approx(9.1, rel=0.03)
    assert sds.total / 1e12 == pytest.approx(15.5, rel=0.03)


@pytest.mark.parametrize("method", sorted(TARGETS))
def test_method_step_within_its_flop_target(method, sds):
    ratio = count_method_step(method).total / sds.total
    assert ratio <= TARGETS[method], f"{method}: {ratio:.3f}x sds FLOPs per step, target {TARGETS[method]}x"


def test_exact_pixel_filter_is_counted_with_its_decode(sds):
    """The exact filter (pixel L_rec, the released code's) decodes every view at 512 px: the counter
    sees that decode, which is what the cheap filter's target rules out."""
    exact = count_method_step("anchords-ipa-filter-exact")
    assert exact.module("vae_decode") / 1e12 == pytest.approx(10.0, rel=0.05)
    assert exact.total / sds.total > TARGETS["anchords-ipa-filter"]
