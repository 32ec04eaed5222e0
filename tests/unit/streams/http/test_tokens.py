"""Client tokens: signed, expiring and bound to one session and user."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core import signing

from django_realtime.streams.http.tokens import Client, TokenSigner, binding_of
from django_realtime.streams.http.wire import HttpRefusal


def _refused(signer: TokenSigner, token: str, binding: str) -> HttpRefusal:
    with pytest.raises(HttpRefusal) as info:
        signer.load(token, binding)
    return info.value


def test_a_token_gives_back_its_client() -> None:
    signer = TokenSigner("mount", 60)
    client = Client.new(binding_of("key", 7)).adding("a").adding("b")
    assert signer.load(signer.sign(client), binding_of("key", 7)) == client
    assert client.removing("a").streams == ("b",)


def test_a_token_older_than_max_age_is_expired() -> None:
    signer = TokenSigner("mount", 60)
    client = Client.new(binding_of(None, None))
    with mock.patch.object(signing.time, "time", return_value=signing.time.time() - 61):
        token = signer.sign(client)
    refusal = _refused(signer, token, client.binding)
    assert (refusal.status, refusal.code) == (410, "client_expired")


def test_a_token_of_another_session_or_user_is_refused() -> None:
    signer = TokenSigner("mount", 60)
    token = signer.sign(Client.new(binding_of("alice-session", 1)))
    for binding in (binding_of("bob-session", 1), binding_of("alice-session", 2)):
        refusal = _refused(signer, token, binding)
        assert (refusal.status, refusal.code) == (403, "client_mismatch")


def test_a_token_of_another_mount_or_altered_is_unknown() -> None:
    client = Client.new(binding_of(None, None))
    token = TokenSigner("one", 60).sign(client)
    for signer, text in (
        (TokenSigner("two", 60), token),
        (TokenSigner("one", 60), token[:-2] + "xx"),
        (TokenSigner("one", 60), "garbage"),
    ):
        refusal = _refused(signer, text, client.binding)
        assert (refusal.status, refusal.code) == (400, "client_unknown")


def test_a_client_signed_again_within_its_second_gets_the_same_token() -> None:
    signer = TokenSigner("mount", 60)
    client = Client.new(binding_of(None, None))
    now = signing.time.time()
    with mock.patch.object(signing.time, "time", return_value=now - 61):
        old = signer.sign(client)
    token = signer.sign(client)
    assert token != old  # a new second: a token valid from now
    assert signer.sign(client) == token
    assert signer.sign(client.adding("a")) != token
    assert signer.load(token, client.binding) == client
    refusal = _refused(signer, old, client.binding)
    assert (refusal.status, refusal.code) == (410, "client_expired")
