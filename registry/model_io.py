"""Saving and loading model objects through the registry (safe serialization)."""

from __future__ import annotations


class ModelIO:
    """Mixin for ``Registry``: ``register_model`` and ``load_model``."""
