"""STAR lab: hardware-in-the-loop evolutionary architecture search for small language models.

Importing ``star`` is cheap on purpose: torch and the database are imported only by the
subpackages that need them (``star.nn``, ``star.db``), so the CLI starts fast.
"""

__version__ = "0.1.0"
