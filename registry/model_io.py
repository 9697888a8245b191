"""Saving and loading model objects through the registry (safe serialization)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry import registration, serialization
from registry.artifacts.base import sha256_file
from registry.errors import InvalidInput

if TYPE_CHECKING:
    from registry.entities import ModelVersion
    from registry.registry import Registry


class ModelIO:
    """Mixin for ``Registry``: ``register_model`` and ``load_model``."""

    def register_model(
        self: Registry,
        name: str,
        estimator: Any,
        *,
        actor: str | None = None,
        allow_pickle: bool = False,
        input_example: Any = None,
        **fields: Any,
    ) -> ModelVersion:
        """Serialize ``estimator``, store it and register it as the next version of ``name``.

        skops by default; ``allow_pickle=True`` writes raw pickle instead, and is refused
        (``UnsafeModel``) unless the policy allows pickle too. ``fields`` are those of
        ``register`` (metrics, params, lineage…). The format tag is stored on the version.
        ``input_example`` (a DataFrame, say) gives the input schema the way MLflow infers a
        signature: names from ``feature_names_in_``, checked against its columns, dtypes from the
        example; no row of it is stored. Giving both it and ``input_schema`` is refused.
        """
        if input_example is not None:
            if fields.get("input_schema"):
                raise InvalidInput(
                    "input_example: give an input example or an input schema, not both", field="input_example"
                )
            fields["input_schema"] = registration.schema_from_example(input_example, estimator)
        fmt = serialization.SKOPS
        if allow_pickle:
            serialization.check_pickle_allowed(allow_pickle, self.policy, model=name)
            fmt = serialization.PICKLE
        with tempfile.TemporaryDirectory(prefix="govflow-save-") as tmp:
            path = Path(tmp) / f"model.{fmt}"
            serialization.save(estimator, path, fmt)
            return self.register(name, path, actor=actor, artifact_format=fmt, **fields)

    def load_model(
        self: Registry,
        ref: str,
        *,
        allow_pickle: bool = False,
        cache_dir: str | Path | None = None,
        actor: str | None = None,
    ) -> Any:
        """Resolve ``ref`` (``name@alias`` or ``name/3``), fetch and verify the bytes, load them.

        Refuses, before anything is loaded: a digest mismatch (``DigestMismatch``), a skops file
        needing types outside the allowlist (``UnsafeModel``), pickle/joblib without both
        ``allow_pickle=True`` and the policy flag (``UnsafeModel``), and a non-model format.
        A permitted pickle load is audited as ``model.pickle_loaded`` before it is unpickled.
        ``cache_dir`` keeps fetched files by digest; a cached file is re-hashed before each use.
        """
        v = self.resolve(ref)
        fmt = serialization.check_loadable(v.artifact_format)
        if fmt in serialization.PICKLE_FORMATS:  # refused before a byte is fetched
            serialization.check_pickle_allowed(allow_pickle, self.policy, model=v.model, version=v.version)
        with _workdir(cache_dir) as folder:
            path = folder / f"{v.artifact_sha256}.{fmt}"
            if not (path.is_file() and sha256_file(path)[0] == v.artifact_sha256):
                self.artifacts.get(v.artifact_sha256, path)
            if fmt in serialization.PICKLE_FORMATS:
                self.note_pickle_load(
                    v.model, v.version, ref=ref, sha256=v.artifact_sha256, fmt=fmt, actor=actor
                )
            return serialization.load(path, fmt, policy=self.policy, allow_pickle=allow_pickle)


@contextmanager
def _workdir(cache_dir: str | Path | None) -> Iterator[Path]:
    """The cache folder, or a private temp folder removed after the load."""
    if cache_dir is not None:
        folder = Path(cache_dir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="govflow-load-") as tmp:
        yield Path(tmp)
