"""check_token(): which session a token's record hands to which browser, when."""

from __future__ import annotations

import pytest

from django_realtime.middleware.handoff import TOKEN_MAX_AGE, TokenRefused, check_token

ISSUED = 1_000_000.0
RECORD = {
    "session_key": "new-key",
    "cookies": ["", "old-key"],
    "expires": ISSUED + TOKEN_MAX_AGE,
}


@pytest.mark.parametrize("cookie", ["old-key", "", "new-key"])
def test_a_token_hands_its_session_to_a_browser_holding_a_cookie_it_names(
    cookie: str,
) -> None:
    assert check_token(RECORD, cookie, ISSUED + 1) == "new-key"


def test_a_token_is_refused_from_the_moment_it_expires() -> None:
    assert check_token(RECORD, "old-key", ISSUED + TOKEN_MAX_AGE - 0.001)

    with pytest.raises(TokenRefused) as refused:
        check_token(RECORD, "old-key", ISSUED + TOKEN_MAX_AGE)

    assert refused.value.code == "invalid_token"
    assert "expired" in refused.value.message


def test_a_token_is_refused_to_a_browser_holding_another_sessions_cookie() -> None:
    with pytest.raises(TokenRefused) as refused:
        check_token(RECORD, "someone-elses-key", ISSUED + 1)

    assert refused.value.code == "wrong_session"


@pytest.mark.parametrize(
    "record",
    [
        None,
        {},
        "new-key",
        {**RECORD, "session_key": None},
        {**RECORD, "cookies": "old-key"},
        {**RECORD, "expires": "soon"},
    ],
    ids=["unknown", "empty", "not-a-dict", "no-key", "cookies", "expires"],
)
def test_an_unknown_or_malformed_record_is_refused(record: object) -> None:
    with pytest.raises(TokenRefused) as refused:
        check_token(record, "old-key", ISSUED + 1)

    assert refused.value.code == "invalid_token"
