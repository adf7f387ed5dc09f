"""diffusers' empty "kept in float32: []" warning is dropped; its other warnings are not."""

from __future__ import annotations

import logging

import torch
from diffusers import UNet2DConditionModel

import generators.models.loader  # noqa: F401  (installs the filter, as every model load does)


def test_the_empty_fp32_warning_is_dropped_and_others_kept(caplog):
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 8), norm_num_groups=4, cross_attention_dim=8,
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=2)
    logger = logging.getLogger("diffusers.models.modeling_utils")
    logger.addHandler(caplog.handler)  # diffusers' loggers do not propagate to the root
    try:
        with caplog.at_level(logging.WARNING, logger="diffusers.models.modeling_utils"):
            unet.to(dtype=torch.float32)  # the cast diffusers' IP-Adapter loader makes
            assert not [r for r in caplog.records if "kept in float32" in r.getMessage()]
            unet._keep_in_fp32_modules = ["conv_in"]  # a list that names modules: the warning is right
            unet.to(dtype=torch.float32)
            assert [r for r in caplog.records if "kept in float32: ['conv_in']" in r.getMessage()]
    finally:
        logger.removeHandler(caplog.handler)
