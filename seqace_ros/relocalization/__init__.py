"""Relocalization: single-frame (``single``), sequence mode (``sequence``), and the one interface
and factory for both (``localizer``)."""

from .localizer import MODES, Localizer, make_localizer
from .result import LOCALIZED, LOST, RelocResult
from .single import RelocConfig, Relocalizer

__all__ = ["LOCALIZED", "LOST", "MODES", "Localizer", "RelocConfig", "RelocResult", "Relocalizer",
           "make_localizer"]
