"""Look-alike names over HTTP (issue 19): users an admin adds, and names a pipeline types in."""

from __future__ import annotations

from typing import Any

import pytest

from registry import errors, identity


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("cаrol", r"^name: 'cаrol' mixes scripts \(Cyrillic, Latin\)"),
        ("ꓚarol", r"^name: 'ꓚarol' mixes scripts \(Latin, Lisu\)"),
        ("caro1", r"^name: 'caro1' looks like the user 'carol'"),
    ],
)
def test_an_admin_cannot_add_a_look_alike_of_carol(
    registry_server: Any, unchanged: Any, new: str, message: str
) -> None:
    admin = registry_server.client()
    admin.add_user("carol", ["approver"])
    with unchanged(), pytest.raises(errors.InvalidInput, match=message):
        admin.add_user(new, ["approver"])


@pytest.mark.parametrize(
    ("claimed", "error", "message"),
    [
        ("bοb", errors.InvalidInput, r"^claimed_by: 'bοb' mixes scripts \(Greek, Latin\)"),
        ("ВОВ", errors.InvalidInput, r"^claimed_by: 'ВОВ' looks like the user 'bob'"),
        ("аlice", errors.InvalidInput, r"^claimed_by: 'аlice' mixes scripts"),
        ("ａｌｉｃｅ", None, ""),  # alice's own name, full width: recorded as alice's claim
    ],
)
def test_a_pipeline_cannot_type_in_a_look_alike(
    team: dict[str, Any], unchanged: Any, claimed: str, error: type | None, message: str
) -> None:
    """bob (pipeline, the registrant of churn/1) relays a form with a name typed in."""
    with identity.acting(channel="prefect-form"):
        if error is None:
            assert team["bob"].approve("churn", 1, claimed_by=claimed).claimed_by == claimed
            return
        with unchanged(), pytest.raises(error, match=message):
            team["bob"].approve("churn", 1, claimed_by=claimed)
