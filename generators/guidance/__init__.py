"""Score-distillation guidance: one core computation, pluggable source providers, AnchorDS extras."""

from generators.guidance.guide import Guidance, GuidanceStep
from generators.guidance.sources import SOURCES, make_source, source_components

__all__ = ["Guidance", "GuidanceStep", "SOURCES", "make_source", "source_components"]
