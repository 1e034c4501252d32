"""The coordinator (``star serve``): FastAPI app over ``star.db``."""

from star.lab.app import create_app

__all__ = ["create_app"]
