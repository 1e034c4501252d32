"""ASGI entry for process managers: ``uvicorn star.lab.asgi:app_from_env --factory``.

Settings come from lab_config.yaml / ``STAR_*`` exactly as for ``star serve``.
"""

from __future__ import annotations

from fastapi import FastAPI

from star.config import load_settings
from star.lab.app import create_app


def app_from_env() -> FastAPI:
    return create_app(load_settings())
