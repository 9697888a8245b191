"""Names that cannot impersonate: one script per name, and look-alikes counted as one person.

The data is ICU's implementation of Unicode TS #39 (security mechanisms), through PyICU: its
confusables table gives each name a *skeleton*, so ``cаrol`` (Cyrillic а) and ``carol`` share
one, and its restriction levels say which scripts a name may mix. Nothing here is a hand-made
list. Names are compared in two ways:

- ``same_person`` (a skeleton in common) where treating two names as one is the safe side:
  separation of duties, distinct approvers, the registrant clearing its own failed gate, and
  refusing a new name that looks like an existing one (``refuse_lookalike``);
- ``fold`` equality (NFKC + case folding) where a name must be exactly someone's to grant
  something: an approver allowlist, acting as a principal, a user lookup.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import icu

from registry.errors import InvalidInput

# "Highly restrictive" (UTS #39 §5.2): one script, or Latin with Han + Hiragana + Katakana,
# Han + Bopomofo or Han + Hangul; digits from one decimal system; no repeated invisible marks.
_CHECKER = icu.SpoofChecker()
_CHECKER.setRestrictionLevel(icu.URestrictionLevel.HIGHLY_RESTRICTIVE)
_CHECKER.setChecks(
    icu.USpoofChecks.RESTRICTION_LEVEL | icu.USpoofChecks.MIXED_NUMBERS | icu.USpoofChecks.INVISIBLE
)
_SHARED_SCRIPTS = {"Common", "Inherited", "Unknown"}


def fold(name: str) -> str:
    """The form in which two spellings are the same name: NFKC, then case folding (``Bob`` = ``ｂｏｂ``)."""
    return unicodedata.normalize("NFKC", name).casefold()


def skeleton(name: str) -> str:
    """The UTS #39 confusable skeleton of ``name``, case-insensitive (``ꓚarol``, ``cаrol``: ``carol``)."""
    return fold(_CHECKER.getSkeleton(0, fold(name)))


def person_keys(name: str) -> frozenset[tuple[str, str]]:
    """The forms in which two names that may denote one person are equal.

    The case-insensitive skeleton, and the skeleton of the name as written, then folded:
    capital ``I`` and small ``l`` share a shape (``BiIl`` is ``Bill``; Cyrillic ``ВОВ`` is
    ``BOB``), which folding first would lose, while folding only afterwards would make
    ``ALICE`` (``ALlCE``) a stranger to ``alice``. So both count.
    """
    written = fold(_CHECKER.getSkeleton(0, unicodedata.normalize("NFKC", name)))
    return frozenset({("folded", skeleton(name)), ("as written", written)})


def same_person(a: str, b: str) -> bool:
    """Whether two names may denote one person (``carol`` = ``cаrol`` = ``CAROL``, ``Bill`` = ``BiIl``)."""
    return not person_keys(a).isdisjoint(person_keys(b))


def lookalike(name: str, others: Iterable[str]) -> str | None:
    """The first of ``others`` that looks like ``name`` without being the same name, or None."""
    key = fold(name)
    return next((o for o in others if fold(o) != key and same_person(o, name)), None)


def refuse_lookalike(name: str, others: Iterable[str], *, field: str, kind: str) -> None:
    """Refuse ``name`` when one of ``others`` (existing names of ``kind``) looks like it."""
    other = lookalike(name, others)
    if other is not None:
        raise InvalidInput(
            f"{field}: {name!r} looks like the {kind} {other!r} (the same UTS #39 confusable skeleton)",
            field=field,
        )


def shown(name: str, like: str) -> str:
    """``name`` for a message, saying which name it looks like when the two are spelled apart."""
    return name if fold(name) == fold(like) else f"{name} (looks like {like})"


def _scripts(name: str) -> list[str]:
    found = {icu.Script.getScript(ch).getName() for ch in name}
    return sorted(found - _SHARED_SCRIPTS)


def check_script(name: str, field: str) -> str:
    """Return ``name`` if a reader cannot be misled by its scripts; refuse it otherwise.

    Refuses a name that mixes scripts (``cаrol``: Latin and Cyrillic; CJK combinations such as
    Han with Hiragana and Katakana are allowed), mixes digits of two decimal systems (``1١``),
    or repeats an invisible combining mark.
    """
    flags = _CHECKER.check(name)
    if not flags:
        return name
    if flags & icu.USpoofChecks.MIXED_NUMBERS:
        digits = sorted({ch for ch in name if unicodedata.category(ch) == "Nd"})
        why = f"mixes digits of different systems ({' '.join(digits)})"
    elif flags & icu.USpoofChecks.RESTRICTION_LEVEL:
        why = f"mixes scripts ({', '.join(_scripts(name))}); a name is written in one script"
    else:
        why = "repeats an invisible combining mark"
    raise InvalidInput(f"{field}: {name!r} {why}", field=field)
