"""Mapping: training buffer, losses and the trainer that turns posed images into a map."""

from .config import MappingConfig, profile
from .trainer import train_map

__all__ = ["MappingConfig", "profile", "train_map"]
