"""One wrong diffusers warning, silenced where it is wrong.

diffusers' IP-Adapter loader casts the UNet with `.to(dtype=...)` itself, and `ModelMixin.to`
then warns "There are modules in UNet2DConditionModel that should be kept in float32: []" although
the list is empty (it tests `is not None`; diffusers 0.42). Nothing is kept in fp32, so the line
is noise in every run's log. A warning that names modules is kept.
"""

from __future__ import annotations

import logging

EMPTY_FP32_WARNING = "that should be kept in float32: []."
_LOGGER = "diffusers.models.modeling_utils"


class _DropEmptyFp32Warning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return EMPTY_FP32_WARNING not in record.getMessage()


_FILTER = _DropEmptyFp32Warning()


def quiet_empty_fp32_warning() -> None:
    """Install the filter on diffusers' model logger (idempotent)."""
    logger = logging.getLogger(_LOGGER)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
