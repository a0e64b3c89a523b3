"""The ASGI entry point, a factory: `receiver.asgi:create_app_from_env`."""

from __future__ import annotations

from starlette.applications import Starlette

from receiver.app import create_app
from receiver.logging import configure_logging
from receiver.settings import load_settings


def create_app_from_env() -> Starlette:
    """The app as each uvicorn worker builds it."""
    settings = load_settings()
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    return create_app(settings)
