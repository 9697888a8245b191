"""Checks at the API boundary: names, actors, version numbers and JSON-safe values.

What passes here is stored and hashed as the same value on SQLite and PostgreSQL: no control,
format (zero-width) or line-break characters in identifiers, no NUL anywhere, finite numbers
only, and version numbers that are real integers within the column's range.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from registry.errors import InvalidInput
from registry.names import check_script, fold

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
MAX_VERSION = 2**31 - 1
MAX_JSON_INT = 2**63 - 1
# Unicode categories refused in identifiers: control, format (zero-width), separators other
# than the plain space, surrogates, private use and unassigned.
_BAD_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def bad_character(text: str, *, allow_space: bool = True) -> str | None:
    """The first character not allowed in an identifier, described, or None."""
    for ch in text:
        cat = unicodedata.category(ch)
        if cat in _BAD_CATEGORIES or (cat == "Zs" and (ch != " " or not allow_space)):
            return f"U+{ord(ch):04X} ({unicodedata.name(ch, cat)})"
    return None


def check_name(name: Any, field: str = "name") -> str:
    """Return ``name`` if it is a legal model or alias name (matched in full); refuse it otherwise."""
    if not isinstance(name, str):
        raise InvalidInput(f"{field}: {name!r} must be a string", field=field)
    if NAME_RE.fullmatch(name) is None:
        bad = bad_character(name, allow_space=False)
        why = f"contains {bad}" if bad else f"must match {NAME_RE.pattern}"
        raise InvalidInput(f"{field}: {name!r} {why} (lowercase letters, digits, . _ -)", field=field)
    return name


def check_actor(actor: Any, field: str = "actor") -> str:
    """Return a usable actor name: 1 to 128 characters, no control, format or line-break ones,
    written in one script (see ``registry.names``)."""
    if not isinstance(actor, str):
        raise InvalidInput(f"{field}: {actor!r} must be a string", field=field)
    actor = actor.strip(" ")
    if not actor or len(actor) > 128:
        raise InvalidInput(f"{field}: {actor!r} must be 1 to 128 characters", field=field)
    bad = bad_character(actor)
    if bad:
        raise InvalidInput(f"{field}: {actor!r} contains {bad}", field=field)
    return check_script(actor, field)


def actor_key(actor: str) -> str:
    """The form a name must match to be someone's: NFKC-normalized and case-folded (``Bob`` = ``ｂｏｂ``)."""
    return fold(actor)


def same_actor(a: str, b: str) -> bool:
    """True when two spellings are the same name, as a grant needs (an allowlist, acting as).

    Separation of duties asks the looser question, ``registry.names.same_person``.
    """
    return actor_key(a) == actor_key(b)


def check_version(version: Any, field: str = "version") -> int:
    """Return ``version`` if it is an int from 1 to 2**31-1; refuse strings, bools and floats."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise InvalidInput(f"{field}: {version!r} is not an integer", field=field)
    if not 1 <= version <= MAX_VERSION:
        raise InvalidInput(f"{field}: {version} must be from 1 to {MAX_VERSION}", field=field)
    return version


def parse_version(text: str, field: str = "version") -> int:
    """A version number written in ASCII digits (``'3'``), range-checked."""
    if not re.fullmatch(r"[0-9]{1,10}", text):
        raise InvalidInput(f"{field}: {text!r} is not a positive integer", field=field)
    return check_version(int(text), field)


def _bad_string(value: str, field: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{field}: contains a NUL character", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate: what bytes that are not UTF-8 turn into on a command line.
        raise InvalidInput(f"{field}: is not valid Unicode text (a lone surrogate)", field=field) from None


def check_text(value: Any, field: str) -> str | None:
    """Free text (a reason, a description): valid Unicode without NUL characters, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: {value!r} must be a string", field=field)
    _bad_string(value, field)
    return value


def check_json(value: Any, field: str, depth: int = 0) -> None:
    """Refuse what the two backends would store differently: NaN/inf, NUL, non-string keys."""
    if depth > 32:
        raise InvalidInput(f"{field}: nested more than 32 levels", field=field)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{field}: {value!r} is not a finite number", field=field)
    elif isinstance(value, str):
        _bad_string(value, field)
    elif isinstance(value, int) and not isinstance(value, bool):
        if not -MAX_JSON_INT <= value <= MAX_JSON_INT:
            raise InvalidInput(f"{field}: {value} is beyond 64-bit integers", field=field)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise InvalidInput(f"{field}: key {key!r} must be a non-empty string", field=field)
            check_json(key, field, depth + 1)
            check_json(item, f"{field}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            check_json(item, field, depth + 1)
    elif value is not None and not isinstance(value, bool | int):
        raise InvalidInput(f"{field}: {type(value).__name__} is not a JSON value", field=field)


def check_impact(
    dataset: Any = None, digest: Any = None, commit: Any = None
) -> tuple[str | None, str | None, str | None]:
    """The arguments of an impact question, checked: strings or None, and a dataset or a commit.

    Returns (dataset, digest, commit) with the commit stripped and lowercased; refuses a value
    that is not a string (naming it), none of the three, and a commit of fewer than 4 characters.
    """
    dataset = check_text(dataset, "dataset")
    digest = check_text(digest, "digest")
    commit = check_text(commit, "commit")
    if commit is None and dataset is None and digest is None:
        raise InvalidInput("impact: give a dataset or a commit", field="dataset")
    if commit is not None:
        commit = commit.strip().lower()
        if len(commit) < 4:
            raise InvalidInput("commit: give at least 4 characters", field="commit")
    return dataset, digest, commit
