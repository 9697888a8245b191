"""Safe model serialization: skops with a type allowlist; raw pickle only behind two opt-ins.

Loading a pickle runs whatever code its author chose, so whoever can write to the artifact store
would own every process that loads from it. skops files are data: loading them only builds
types on an allowlist. The allowlist is our reviewed default set plus ``Policy.trusted_types``,
never the list of types the file itself asks for.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from registry.errors import InvalidInput, UnsafeModel
from registry.policy import Policy

SKOPS = "skops"
PICKLE = "pickle"
JOBLIB = "joblib"
FILE = "file"  # stored and versioned, never loaded or served
PICKLE_FORMATS = frozenset({PICKLE, JOBLIB})
LOADABLE_FORMATS = frozenset({SKOPS}) | PICKLE_FORMATS
CLAIMABLE_FORMATS = (SKOPS, JOBLIB, PICKLE, FILE)

# joblib's compressed files start with the compressor's own magic (zlib, gzip, bz2, xz, lzma, lz4).
_JOBLIB_COMPRESSED = (b"\x78", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00\x00", b'\x04"M\x18')
_JOBLIB_SUFFIXES = frozenset({".joblib", ".jbl"})
# An uncompressed joblib dump is a pickle stream naming joblib's array wrapper.
_JOBLIB_MARKER = b"joblib.numpy_pickle"
_SNIFF_BYTES = 1 << 20

# Types skops does not trust on its own but that common scikit-learn models need (found by
# dumping pipelines, forests, boosting, k-NN and calibrated models). Each is an sklearn-internal
# state container that skops rebuilds from arrays; none calls user-supplied code when loaded.
DEFAULT_TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "numpy.dtype",
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
        "sklearn.metrics._dist_metrics.ManhattanDistance64",
        "sklearn.metrics._dist_metrics.MinkowskiDistance64",
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
    }
)


def detect_format(path: Path) -> str:
    """The format of the file at ``path``, read from its content first and its extension second.

    A zip archive holding skops' ``schema.json`` is skops; a pickle stream (protocol 2-5 header)
    is joblib when it names joblib's array wrapper or has a ``.joblib`` extension, else pickle; a
    joblib extension on compressed bytes is joblib; anything else is ``file``. Nothing is loaded.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError as exc:  # a folder, a device, no permission, an I/O error
        raise InvalidInput(f"artifact: {path}: cannot read: {exc.strerror or exc}", field="artifact") from exc
    if head.startswith(b"PK\x03\x04"):
        return SKOPS if _is_skops_zip(path) else FILE
    suffix = path.suffix.lower()
    if _is_pickle_header(head):
        return JOBLIB if _JOBLIB_MARKER in head or suffix in _JOBLIB_SUFFIXES else PICKLE
    if suffix in _JOBLIB_SUFFIXES and head.startswith(_JOBLIB_COMPRESSED):
        return JOBLIB
    return FILE


def resolve_format(path: Path, claimed: str | None = None) -> str:
    """The format to record for ``path``: ``claimed`` if the content agrees, else the detected one.

    Refuses (``InvalidInput``, field ``format``) an unknown claim and a claim the content
    contradicts (``--format skops`` on a pickle, say). ``file`` is never contradicted: it only
    says the bytes are not to be loaded.
    """
    found = detect_format(path)
    if claimed is None:
        return found
    if claimed not in CLAIMABLE_FORMATS:
        raise InvalidInput(
            f"format: {claimed!r} is not one of {', '.join(CLAIMABLE_FORMATS)}", field="format"
        )
    # joblib loads plain pickles too, so a pickle stream may be registered as either.
    agrees = claimed in (found, FILE) or (claimed == JOBLIB and found == PICKLE)
    if not agrees:
        what = "not a model format we recognise" if found == FILE else f"a {found} file"
        raise InvalidInput(
            f"format: {Path(path).name} is {what}, not {claimed}; give --format {found} or leave it out",
            field="format",
        )
    return claimed


def _is_pickle_header(head: bytes) -> bool:
    # PROTO opcode then the protocol number; joblib and pickle.dump write 2-5.
    return len(head) > 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _is_skops_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return "schema.json" in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def allowlist(policy: Policy) -> frozenset[str]:
    """The types a skops load may build: the defaults plus the policy's ``trusted_types``."""
    return DEFAULT_TRUSTED_TYPES | frozenset(policy.trusted_types)


def save(estimator: Any, path: Path, fmt: str = SKOPS) -> str:
    """Write ``estimator`` to ``path`` as skops (default) or pickle; return the format tag.

    Refuses an unknown format and an object skops cannot serialize (``InvalidInput``). Whether
    pickle is permitted at all is the caller's check (``check_pickle_allowed``).
    """
    if fmt == SKOPS:
        import skops.io as sio

        try:
            sio.dump(estimator, path)
        except (TypeError, ValueError, AttributeError, NotImplementedError) as exc:
            raise InvalidInput(
                f"estimator: skops cannot serialize {type(estimator).__qualname__}: {exc}",
                field="estimator",
            ) from exc
        return SKOPS
    if fmt == PICKLE:
        try:
            with open(path, "wb") as fh:
                pickle.dump(estimator, fh, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise InvalidInput(
                f"estimator: cannot pickle {type(estimator).__qualname__}: {exc}", field="estimator"
            ) from exc
        return PICKLE
    raise InvalidInput(f"format: {fmt!r} is not one of skops, pickle", field="format")


def check_pickle_allowed(
    allow_pickle: bool, policy: Policy, *, model: str | None = None, version: int | None = None
) -> None:
    """Refuse raw pickle unless the caller passed ``allow_pickle=True`` and the policy allows it."""
    missing = [
        what
        for what, given in (("allow_pickle=True", allow_pickle), ("policy allow_pickle", policy.allow_pickle))
        if not given
    ]
    if missing:
        where = f"{model}/{version}: " if model and version else ""
        raise UnsafeModel(
            f"{where}raw pickle runs arbitrary code; it needs both opt-ins, missing: {', '.join(missing)}",
            model=model,
            version=version,
            reason="pickle",
        )


def untrusted_types(path: Path, trusted: Iterable[str]) -> list[str]:
    """Types the skops file at ``path`` needs that ``trusted`` does not list (sorted).

    Refuses a file that is not a skops archive (a pickle renamed, say) with ``UnsafeModel``.
    """
    import skops.io as sio

    try:
        needed = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise UnsafeModel(f"{path.name}: not a valid skops file ({exc}); refusing to load it") from exc
    allowed = set(trusted)
    return sorted(t for t in needed if t not in allowed)


def check_loadable(fmt: str) -> str:
    """Return ``fmt`` if ``load`` knows it; refuse anything else (``InvalidInput``)."""
    if fmt not in LOADABLE_FORMATS:
        raise InvalidInput(
            f"format: {fmt!r} is not a model format that can be loaded (skops, pickle, joblib)",
            field="artifact_format",
        )
    return fmt


def load(path: Path, fmt: str, *, policy: Policy, allow_pickle: bool = False) -> Any:
    """Load a verified model file of format ``fmt``.

    skops: refuses (``UnsafeModel``, listing them) any type outside ``allowlist(policy)``.
    pickle/joblib: refused unless ``allow_pickle`` and ``policy.allow_pickle``; auditing that
    opt-in is the caller's job (``Registry.load_model`` does it). Any other format is refused
    with ``InvalidInput``.
    """
    if check_loadable(fmt) == SKOPS:
        return _load_skops(Path(path), allowlist(policy))
    check_pickle_allowed(allow_pickle, policy)
    return _load_pickle(Path(path), fmt)


def _load_skops(path: Path, trusted: frozenset[str]) -> Any:
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    bad = untrusted_types(path, trusted)
    if bad:
        raise UnsafeModel(
            f"{path.name}: untrusted types {', '.join(bad)}; add them to the policy's trusted_types "
            "only if you trust their code",
            reason="untrusted types",
            types=bad,
        )
    try:
        # The allowlist itself is passed, so skops re-checks every type against it.
        return sio.load(path, trusted=sorted(trusted))
    except UntrustedTypesFoundException as exc:
        raise UnsafeModel(f"{path.name}: {exc}", reason="untrusted types") from exc
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError) as exc:
        raise UnsafeModel(f"{path.name}: not a valid skops file ({exc}); refusing to load it") from exc


def _load_pickle(path: Path, fmt: str) -> Any:
    if fmt == JOBLIB:
        import joblib

        return joblib.load(path)
    with open(path, "rb") as fh:
        return pickle.load(fh)  # noqa: S301 - gated by check_pickle_allowed and audited by the caller
