"""The registry server: the registry API over HTTP, every request authenticated."""

from registry.service.app import create_app

__all__ = ["create_app"]
