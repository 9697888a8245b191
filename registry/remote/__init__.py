"""Client mode: the registry API served by ``govflow server``, over HTTP."""

from registry.remote.client import RemoteRegistry

__all__ = ["RemoteRegistry"]
