"""The client offers every public method of the embedded registry, with the same signature."""

from __future__ import annotations

import inspect

from registry.registry import Registry
from registry.remote import RemoteRegistry


def _shape(fn: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]  # type: ignore[arg-type]


def test_every_public_method_is_offered_with_the_same_signature() -> None:
    missing, different = [], []
    for name in sorted(n for n in dir(Registry) if not n.startswith("_")):
        ours, theirs = getattr(Registry, name), getattr(RemoteRegistry, name, None)
        if theirs is None:
            missing.append(name)
        elif callable(ours) and not isinstance(ours, property) and _shape(ours) != _shape(theirs):
            different.append(name)
    assert missing == [] and different == []


def test_registry_with_an_http_url_is_the_client(monkeypatch: object) -> None:
    client = Registry("http://127.0.0.1:9", token="gft_x")
    try:
        assert isinstance(client, RemoteRegistry) and client.url == "http://127.0.0.1:9"
    finally:
        client.close()
