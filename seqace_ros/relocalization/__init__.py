"""Relocalization: single-frame (this package's `single`) and sequence mode."""

from .result import LOCALIZED, LOST, RelocResult
from .single import RelocConfig, Relocalizer

__all__ = ["LOCALIZED", "LOST", "RelocConfig", "RelocResult", "Relocalizer"]
