"""Hypothesis strategies for hostile registry input, and the oracles that say what must be refused.

Each strategy mixes valid values (so that some calls succeed and change state) with the
classes of bad input we have seen or fear: look-alike and invisible characters, line breaks,
NUL, empty and very long strings, numbers that are not finite or do not fit a column.
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from hypothesis import strategies as st

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
MAX_VERSION = 2**31 - 1
# Characters that look like or hide inside a legal name.
LOOKALIKES = ["\u0430", "\u0435", "\u043e", "\u0131", "\u212a", "\uff4d", "\ufb01", "\u00b2", "\u0660", "A"]
INVISIBLE = ["\u200b", "\u2060", "\ufeff", "\u200d", "\u00ad", "\u202e"]
BREAKS = ["\n", "\r", "\r\n", "\u2028", "\u0085", "\t", "\x1b", "\x7f"]
NUL = "\x00"
# Refused in identifiers by design: control, format, line/paragraph separators, surrogates.
_BAD_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}

legal_names = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True)


@st.composite
def _spliced(draw: st.DrawFn, base: st.SearchStrategy[str], chars: list[str]) -> str:
    """A legal-looking string with one hostile character inserted or substituted."""
    text = draw(base)
    ch = draw(st.sampled_from(chars))
    at = draw(st.integers(0, len(text)))
    if draw(st.booleans()) and text:
        return text[:at] + ch + text[at + 1 :]
    return text[:at] + ch + text[at:]


def identifiers(*, allow_nul: bool = True) -> st.SearchStrategy[str]:
    """Names, aliases and actors: legal ones and every class of hostile one."""
    hostile = INVISIBLE + BREAKS + LOOKALIKES + ([NUL] if allow_nul else [])
    text = st.text(max_size=12)
    if not allow_nul:
        text = st.text(st.characters(blacklist_characters=NUL), max_size=12)
    return st.one_of(
        legal_names,
        legal_names,
        _spliced(legal_names, hostile),
        legal_names.map(lambda s: s + "\n"),
        legal_names.map(lambda s: " " + s),
        st.sampled_from(["", " ", "a" * 128, "a" * 129, "x" * 5000, "A", "-a", ".", "a/b", "a@b"]),
        text,
    )


def is_legal_name(value: Any) -> bool:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def has_bad_char(value: str) -> bool:
    """Whether ``value`` holds a control, format, line-break or surrogate character."""
    return any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in value)


def mixes_latin_with_look_alikes(value: str) -> bool:
    """Whether ``value`` has Latin letters beside Cyrillic or Greek ones (by character name)."""
    scripts = {unicodedata.name(ch, "").split(" ")[0] for ch in value}
    return "LATIN" in scripts and bool(scripts & {"CYRILLIC", "GREEK"})


def must_refuse_actor(value: Any) -> bool:
    """An actor the registry must refuse (design invariants 9 and 18): not text, blank, too long,
    holding a control, format or line-break character, or mixing Latin with Cyrillic or Greek."""
    if value is None:
        return False  # falls back to GOVFLOW_ACTOR
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > 128:
        return True
    return has_bad_char(value.strip()) or mixes_latin_with_look_alikes(value)


versions = st.one_of(
    st.integers(1, 4),
    st.integers(1, 4),
    st.sampled_from([0, -1, MAX_VERSION, MAX_VERSION + 1, 2**63, -(2**63) - 1, 10**30]),
    st.sampled_from(["1", " 1", "1\n", "\uff11", "\u00b2", "1.0", "", "one"]),
    st.sampled_from([1.0, 2.5, math.nan, math.inf, True, False, None]),
)


def is_legal_version(value: Any) -> bool:
    return type(value) is int and 1 <= value <= MAX_VERSION


_odd_numbers = st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324, 10**30, 10**400])
_text_values = st.one_of(
    st.text(max_size=8), st.sampled_from(["nan", "inf", "1e999", "a\x00b", "\u200b", "x" * 3000, "a\udcffb"])
)
scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**6), 10**6),
    _odd_numbers,
    st.booleans(),
    st.none(),
    _text_values,
)
keys = st.one_of(
    st.text(min_size=1, max_size=8),
    st.sampled_from(["", "a\x00", "auc", "k\n", "k\udcff", 1, None, 2.5, ("a",)]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
# One odd value under a plain key: each class of bad number reaches the check often.
_one_odd = st.builds(lambda v: {"k": v}, st.one_of(_odd_numbers, _text_values))
mappings = st.one_of(st.dictionaries(keys, json_values, max_size=4), _one_odd)
metric_maps = st.one_of(
    st.dictionaries(st.sampled_from(["auc", "f1", "loss"]), st.floats(-1e6, 1e6), max_size=3),
    st.dictionaries(keys, scalars, max_size=3),
    _one_odd,
    st.just([("auc", 0.5)]),
)
tag_maps = st.one_of(
    st.dictionaries(st.sampled_from(["team", "env"]), st.text(max_size=8), max_size=2),
    st.dictionaries(keys, st.one_of(_text_values, scalars), max_size=3),
)


def holds_nul_or_nonfinite(value: Any) -> bool:
    """Whether NaN, an infinity, a NUL or a lone surrogate (undecodable bytes, which UTF-8
    cannot store) appears anywhere in ``value``, keys included."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return NUL in value or any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(holds_nul_or_nonfinite(k) or holds_nul_or_nonfinite(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul_or_nonfinite(v) for v in value)
    return False


def is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


stages = st.sampled_from(
    ["staging", "production", "development", "archived", "Staging", "prod", "", "staging\n"]
)
reasons = st.one_of(st.none(), st.text(max_size=10), st.sampled_from(["", " ", "a\x00b", "ok\n", "x" * 5000]))

# Policy files: valid ones, then every way a file can be wrong.
_valid_policies = st.sampled_from(
    [
        ("toml", b""),
        ("toml", b"separation_of_duties = true\n[stages.production]\napprovals = 1\n"),
        ("yaml", b"stages:\n  production:\n    approvals: 2\n    gates: [accuracy]\n"),
    ]
)
_bad_policies = st.one_of(
    st.tuples(st.sampled_from(["toml", "yaml", "yml", "json", ""]), st.binary(max_size=64)),
    st.tuples(
        st.sampled_from(["toml", "yaml"]), st.text(max_size=40).map(lambda t: t.encode("latin-1", "replace"))
    ),
    st.sampled_from(
        [
            ("toml", "approver = 'J\u00f6rg'\n".encode("latin-1")),
            ("toml", b"[stages.production\napprovals = 1"),
            ("toml", b"stages = 3\n"),
            ("toml", b"[stages.production]\napprovals = -1\n"),
            ("toml", b"[stages.production]\napprovals = 'one'\n"),
            ("toml", b"[stages.moon]\napprovals = 1\n"),
            ("toml", b"[drift]\nwarn = 0.5\nact = 0.1\n"),
            ("toml", b"approval_timeout_seconds = 1e999\n"),
            ("toml", b"unknown = 1\n"),
            ("yaml", b"- a\n- b\n"),
            ("yaml", b"stages: {production: {approvals: .nan}}\n"),
            ("yaml", b"stages:\n  production:\n   approvals: [1\n"),
            ("yaml", b"&a [*a]\n"),
            ("yaml", b"!!python/object:os.system 'true'\n"),
            ("yaml", b"\xff\xfe\x00\x00"),
            ("yaml", b"allow_pickle: yes please\n"),
            ("yaml", b"trusted_types: [1, 2]\n"),
        ]
    ),
)
policy_files = st.one_of(_valid_policies, _bad_policies)
