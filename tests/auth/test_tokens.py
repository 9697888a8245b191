"""API token format, parsing and the salted scrypt hash."""

from __future__ import annotations

import pytest

from registry.auth import tokens
from registry.errors import Unauthenticated


def test_issued_token_has_the_documented_shape() -> None:
    issued = tokens.issue()
    assert tokens.TOKEN_RE.fullmatch(issued.token)
    assert issued.token.startswith(f"gft_{issued.token_id}_")
    assert len(issued.token_id) == 16 and len(issued.salt) == 32 and len(issued.hash) == 128
    assert tokens.parse(issued.token) == issued.token_id


def test_verify_accepts_the_token_and_nothing_else() -> None:
    issued = tokens.issue()
    assert tokens.verify(issued.token, issued.salt, issued.hash)
    tampered = issued.token[:-1] + ("A" if issued.token[-1] != "A" else "B")
    assert not tokens.verify(tampered, issued.salt, issued.hash)
    other = tokens.issue()
    assert not tokens.verify(other.token, issued.salt, issued.hash)
    assert not tokens.verify(issued.token, other.salt, issued.hash)


def test_hash_is_salted_and_uses_scrypt_parameters() -> None:
    secret = "gft_0123456789abcdef_" + "x" * 43
    a, b = "00" * 16, "11" * 16
    assert tokens.hash_token(secret, a) != tokens.hash_token(secret, b)
    import hashlib

    expected = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(a), n=2**14, r=8, p=1, dklen=64).hex()
    assert tokens.hash_token(secret, a) == expected


def test_repr_never_shows_the_token_or_hash() -> None:
    issued = tokens.issue()
    assert issued.token not in repr(issued) and issued.hash not in repr(issued)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "gft_",
        "gft_0123456789abcdef",
        "gft_0123456789abcdef_short",
        "gft_0123456789ABCDEF_" + "a" * 43,  # uppercase hex
        "gft_0123456789abcdeg_" + "a" * 43,  # not hex
        "gft_0123456789abcdef_" + "a" * 44,  # too long
        "gft_0123456789abcdef_" + "a" * 42 + "=",  # padding
        "gft_0123456789abcdef_" + "a" * 42 + "\n",
        "gft_0123456789abcdef_" + "a" * 42 + "\u200b",
        "gft_０123456789abcdef_" + "a" * 43,  # fullwidth digit
        "GFT_0123456789abcdef_" + "a" * 43,
        "ghp_0123456789abcdef_" + "a" * 43,
    ],
)
def test_parse_refuses_malformed_tokens(bad: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        tokens.parse(bad)
    assert "\n" not in str(info.value)
    if len(bad) > 20:
        assert bad not in str(info.value)  # the raw token never ends up in an error line


def test_parse_refuses_non_strings() -> None:
    with pytest.raises(Unauthenticated):
        tokens.parse(b"gft_0123456789abcdef_" + b"a" * 43)  # type: ignore[arg-type]
