"""Client tokens of the HTTP stream transports: signed, expiring, session-bound.

A client of the HTTP transports has no connection for the server to keep
state on, and any process may serve any of its requests. What the server
needs between requests travels with the client as a token made with
:mod:`django.core.signing`: a random client id, the streams the client
subscribed to, and a binding to the Django session and user the token was
made for. The server keeps nothing: a client that stops sending requests
leaves nothing behind, and its token expires ``max_age`` seconds after it
was made (every response carries a fresh one).

Pure apart from the signing key and the clock. A signer makes the token
of one client once a second (a token made in the same second is the same
text), and binding hashes are kept for the last sessions seen.
"""

from __future__ import annotations

import functools
import secrets
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils.crypto import constant_time_compare, salted_hmac

from django_realtime.streams.http.wire import HttpRefusal

__all__ = ["Client", "TokenSigner", "binding_of"]

_SALT = "django_realtime.streams.http.client"
# Most tokens a signer keeps for the second they were made in.
_KEPT = 1024


def binding_of(session_key: str | None, user_key: Any) -> str:
    """Return what binds a token to one session and user (a keyed hash of them).

    A token made for one session (or, without a session, one user) is
    refused in any other. Anonymous clients without a session share the
    binding of ``(None, None)``: their tokens grant nothing, since every
    stream is authorized again on every resume.
    """
    value = f"{session_key or ''}\x00{'' if user_key is None else user_key}"
    return _binding(settings.SECRET_KEY, value)


@functools.lru_cache(maxsize=_KEPT)
def _binding(secret: str, value: str) -> str:
    return salted_hmac(_SALT, value, secret=secret, algorithm="sha256").hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Client:
    """One client of the HTTP transports.

    Attributes:
        id: A random id, the same in all the client's tokens.
        binding: :func:`binding_of` its session and user.
        streams: The streams it subscribed to, in subscription order.
    """

    id: str
    binding: str
    streams: tuple[str, ...] = ()

    @classmethod
    def new(cls, binding: str) -> Client:
        """Return a new client with no streams."""
        return cls(secrets.token_hex(8), binding)

    def adding(self, stream: str) -> Client:
        """Return this client with ``stream`` subscribed."""
        return replace(self, streams=(*self.streams, stream))

    def removing(self, stream: str) -> Client:
        """Return this client without ``stream``."""
        return replace(self, streams=tuple(s for s in self.streams if s != stream))


class TokenSigner:
    """Make and check the client tokens of one mount of the HTTP transports.

    Args:
        scope: Names the mount (its URL prefix): a token made for one
            mount is refused by another.
        max_age: Seconds a token stays valid after it was made.
    """

    def __init__(self, scope: str, max_age: float) -> None:
        self.salt = f"{_SALT}:{scope}"
        self.max_age = max_age
        # The tokens made this second (signing's timestamps are seconds).
        self._second = 0
        self._made: dict[tuple[Client, str], str] = {}

    def sign(self, client: Client) -> str:
        """Return the token of ``client``, valid for ``max_age`` from now."""
        second = int(time.time())
        key = (client, settings.SECRET_KEY)
        if second != self._second:
            self._second, self._made = second, {}
        elif (token := self._made.get(key)) is not None:
            return token
        token = self._make(client)
        if len(self._made) < _KEPT:
            self._made[key] = token
        return token

    def _make(self, client: Client) -> str:
        return signing.dumps(
            {"c": client.id, "b": client.binding, "s": list(client.streams)},
            salt=self.salt,
            # Stream names repeat their prefixes: a shorter URL.
            compress=True,
        )

    def load(self, token: str, binding: str) -> Client:
        """Return the client of ``token``, if it is valid for ``binding``.

        Raises:
            HttpRefusal: ``client_expired`` (410) for a token older than
                ``max_age``; ``client_unknown`` (400) for one not made here,
                or altered; ``client_mismatch`` (403) for one made for
                another session or user.
        """
        try:
            payload = signing.loads(
                token, salt=self.salt, max_age=timedelta(seconds=self.max_age)
            )
        except signing.SignatureExpired:
            raise HttpRefusal(
                410,
                "client_expired",
                f"Expected a client id used within the last {self.max_age:g} "
                "seconds, got an older one: start again without it and "
                "subscribe again from your positions.",
            ) from None
        except signing.BadSignature:
            raise HttpRefusal(
                400,
                "client_unknown",
                "Expected a client id this server made, got an unknown one.",
            ) from None
        if (
            type(payload) is not dict
            or type(payload.get("c")) is not str
            or type(payload.get("b")) is not str
            or type(payload.get("s")) is not list
        ):
            raise HttpRefusal(  # pragma: no cover (signed by us)
                400, "client_unknown", "The client id does not hold a client."
            )
        if not constant_time_compare(payload["b"], binding):
            raise HttpRefusal(
                403,
                "client_mismatch",
                "Expected a client id made for this session, got one of "
                "another session or user: start again without it.",
            )
        return Client(payload["c"], payload["b"], tuple(payload["s"]))
