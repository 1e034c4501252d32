"""LIV operators and the torch model built from an ``ArchSpec`` (pure PyTorch).

Importing this package imports torch; ``star`` itself stays cheap to import.
"""

from __future__ import annotations

from star.nn.cache import ModelCache
from star.nn.model import StarModel

__all__ = ["ModelCache", "StarModel"]
